//! STUB: replaced by the real module.
#![allow(missing_docs, dead_code)]
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub max_channels: u32,
    pub max_sample_rate: u32,
    pub min_sample_rate: u32,
    pub max_duration_seconds: u64,
}
impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_channels: 32,
            max_sample_rate: 768_000,
            min_sample_rate: 8000,
            max_duration_seconds: 6 * 3600,
        }
    }
}
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub container: String,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub bits_per_sample: Option<u32>,
    pub total_frames: Option<u64>,
}
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album: Option<String>,
    pub track_number: Option<u32>,
    pub year: Option<i32>,
}
pub struct CoverArt {
    pub media_type: String,
    pub data: Vec<u8>,
}
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("x")]
    Empty,
}
pub struct SourceDecoder {
    info: SourceInfo,
    tags: Tags,
}
impl SourceDecoder {
    pub fn open(_path: &std::path::Path, _options: &DecodeOptions) -> Result<Self, DecodeError> {
        Err(DecodeError::Empty)
    }
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }
    pub fn tags(&self) -> &Tags {
        &self.tags
    }
    pub fn cover(&self) -> Option<&CoverArt> {
        None
    }
    pub fn next_chunk(&mut self) -> Result<Option<&[f32]>, DecodeError> {
        Ok(None)
    }
    pub fn frames_decoded(&self) -> u64 {
        0
    }
}
