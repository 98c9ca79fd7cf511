//! STUB
#![allow(missing_docs, dead_code)]
pub fn output_rate(r: u32) -> u32 {
    r
}
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("x")]
    X,
}
pub struct Resampler;
impl Resampler {
    pub fn new(_from: u32, _to: u32) -> Result<Self, ResampleError> {
        Ok(Resampler)
    }
    pub fn process(&mut self, _input: &[f32], _out: &mut Vec<f32>) -> Result<(), ResampleError> {
        Ok(())
    }
    pub fn finish(&mut self, _out: &mut Vec<f32>) -> Result<(), ResampleError> {
        Ok(())
    }
}
