//! The boundary with symphonia: probing, containing its panics, and mapping its errors and codec
//! ids onto ours.

use std::sync::LazyLock;

use symphonia::core::codecs::audio::well_known as ids;
use symphonia::core::codecs::audio::{
    AudioCodecId, AudioCodecParameters, AudioDecoder, AudioDecoderOptions,
};
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, Track};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use super::DecodeError;
use super::fdk_aac;
use super::implicit_sbr;
use super::mpa_layout;
use super::opus::OpusDecoder;
use super::types::{guard, sym_error};

/// The decoders this build has: symphonia's, and Opus through libopus (symphonia has none).
static CODECS: LazyLock<CodecRegistry> = LazyLock::new(|| {
    let mut registry = CodecRegistry::new();
    symphonia::default::register_enabled_codecs(&mut registry);
    registry.register_audio_decoder::<OpusDecoder>();
    registry
});

/// The decoders this build has, in place of `symphonia::default::get_codecs`.
pub(super) fn codecs() -> &'static CodecRegistry {
    &CODECS
}

/// Makes the decoder for `params`. The registry picks by codec id alone, and HE-AAC shares
/// AAC's id: an AudioSpecificConfig that signals SBR goes to fdk-aac (`fdk_aac`), whose decoder
/// has it, and plain AAC-LC stays with symphonia's. MPEG audio goes through `mpa_layout`, which
/// lets the channel mode change mid-stream.
pub(super) fn make_decoder(
    params: &AudioCodecParameters,
    opts: &AudioDecoderOptions,
) -> Result<Box<dyn AudioDecoder>, DecodeError> {
    let wrapped = fdk_decoder(params, opts).or_else(|| mpa_layout::make(params, opts));
    match wrapped {
        Some(made) => made.map_err(sym_error),
        None => guard(|| codecs().make_audio_decoder(params, opts))?.map_err(sym_error),
    }
}

/// Probes the file's content (symphonia 0.6 ignores hints). Metadata ahead of the stream (ID3v2)
/// is handed to the format reader and comes first in its metadata log.
pub(super) fn probe(source: Box<dyn MediaSource>) -> Result<Box<dyn FormatReader>, DecodeError> {
    let mss = MediaSourceStream::new(source, Default::default());
    let (probe, fmt_opts) = (symphonia::default::get_probe(), FormatOptions::default());
    let probed = guard(|| probe.probe(&Hint::new(), mss, fmt_opts, MetadataOptions::default()))?;
    probed.map_err(|e| match e {
        SymError::Unsupported(m) if m.contains("no suitable format reader") => {
            DecodeError::UnrecognizedFormat
        }
        e => sym_error(e),
    })
}

/// The audio parameters of `track`, if it is an audio track.
pub(super) fn audio_params(track: &Track) -> Option<&AudioCodecParameters> {
    track.codec_params.as_ref().and_then(|p| p.audio())
}

/// Short lowercase name of a codec, also for codecs this build cannot decode.
pub(super) fn codec_name(id: AudioCodecId) -> String {
    if let Some(registered) = codecs().get_audio_decoder(id) {
        return registered.codec.info.short_name.to_ascii_lowercase();
    }
    // Codecs met in music libraries that this build cannot decode.
    let name = match id {
        ids::CODEC_ID_MP2 => "mp2",
        ids::CODEC_ID_AC3 => "ac3",
        ids::CODEC_ID_EAC3 => "eac3",
        ids::CODEC_ID_WAVPACK => "wavpack",
        _ => return format!("codec id {id}"),
    };
    name.into()
}

/// Makes the decoder for `params`: fdk-aac for HE-AAC ([`is_he_aac`]) and for AAC-LC that may
/// carry implicit SBR (`implicit_sbr`), else `None`.
fn fdk_decoder(
    params: &AudioCodecParameters,
    _opts: &AudioDecoderOptions,
) -> Option<symphonia::core::errors::Result<Box<dyn AudioDecoder>>> {
    let params = match fdk_aac::is_he_aac(params) {
        true => params.clone(),
        false => implicit_sbr::is_candidate(params)
            .then(|| implicit_sbr::with_config(params))
            .flatten()?,
    };
    Some(fdk_aac::FdkAacDecoder::try_new(&params).map(|d| Box::new(d) as Box<dyn AudioDecoder>))
}

/// Whether [`fdk_decoder`] makes fdk-aac's decoder for `params` (whose delay line is then drained).
pub(super) fn uses_fdk(params: &AudioCodecParameters) -> bool {
    fdk_aac::is_he_aac(params)
        || (implicit_sbr::is_candidate(params) && implicit_sbr::with_config(params).is_some())
}
