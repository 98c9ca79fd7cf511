// The player: written in issue 4.
