//! STUB
#![allow(missing_docs, dead_code)]
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("x")]
    X,
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoudnessFigures {
    pub integrated_lufs: f64,
    pub loudness_range_lu: f64,
    pub true_peak_dbtp: f64,
    pub sample_peak_dbfs: f64,
}
pub struct LoudnessMeter;
impl LoudnessMeter {
    pub fn new(_r: u32) -> Result<Self, AnalyzeError> {
        Ok(Self)
    }
    pub fn push(&mut self, _i: &[f32]) -> Result<(), AnalyzeError> {
        Ok(())
    }
    pub fn finish(self) -> Result<LoudnessFigures, AnalyzeError> {
        Err(AnalyzeError::X)
    }
}
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Waveform {
    pub version: u32,
}
pub struct WaveformBuilder;
impl WaveformBuilder {
    pub fn new(_r: u32, _t: usize) -> Self {
        Self
    }
    pub fn push(&mut self, _i: &[f32]) {}
    pub fn finish(self) -> Waveform {
        Waveform { version: 1 }
    }
}
