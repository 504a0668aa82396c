//! The `classify` job: a model, a list of images, one answer per image. Decoding, preprocessing,
//! inference and ranking, with the scratch buffers kept between images. A bad image is an
//! answer too (an error naming the file), never the end of the run.

use crate::labels;
use crate::model::{Model, ModelError};
use crate::preprocess::{decode_file, Preprocessor};
use crate::topk::{top_k, Prediction};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The answer for one image.
#[derive(Clone, Debug, Serialize)]
pub struct Classification {
    pub image: String,
    pub top: Vec<Prediction>,
    /// Model run time, preprocessed input to logits.
    pub latency_ms: f64,
    /// Decode and preprocess time.
    pub preprocess_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
}

/// A model with its preprocessing, labels and buffers.
pub struct Classifier {
    model: Model,
    pre: Preprocessor,
    labels: Vec<String>,
    pixels: Vec<u8>,
    input: Vec<f32>,
}

impl Classifier {
    pub fn new(model: Model) -> Self {
        let pre = Preprocessor::new(model.metadata().preprocessing.clone());
        let labels = labels::resolve(model.metadata().labels.as_deref(), model.num_classes());
        let input = vec![0f32; pre.input_len()];
        Classifier {
            model,
            pre,
            labels,
            pixels: Vec::new(),
            input,
        }
    }

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Model::load(path).map(Self::new)
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Logits of an already preprocessed input.
    pub fn logits(&mut self, input: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.model.run(input)
    }

    /// Preprocesses a decoded image into the classifier's input buffer and returns it.
    pub fn preprocess(&mut self, img: &image::RgbImage) -> &[f32] {
        self.pre
            .preprocess_into(img, &mut self.pixels, &mut self.input);
        &self.input
    }

    /// Classifies one decoded image.
    pub fn classify_rgb(
        &mut self,
        name: &str,
        img: &image::RgbImage,
        k: usize,
        keep_logits: bool,
    ) -> Result<Classification, ModelError> {
        let t0 = Instant::now();
        self.pre
            .preprocess_into(img, &mut self.pixels, &mut self.input);
        let t1 = Instant::now();
        let logits = self.model.run(&self.input)?;
        let latency = t1.elapsed();
        Ok(Classification {
            image: name.to_string(),
            top: top_k(&logits, &self.labels, k),
            latency_ms: latency.as_secs_f64() * 1e3,
            preprocess_ms: (t1 - t0).as_secs_f64() * 1e3,
            logits: keep_logits.then_some(logits),
        })
    }

    /// Classifies one image file; the error names the file.
    pub fn classify_file(
        &mut self,
        path: &Path,
        k: usize,
        keep_logits: bool,
    ) -> anyhow::Result<Classification> {
        let t0 = Instant::now();
        let img = decode_file(path)?;
        let decode_ms = t0.elapsed().as_secs_f64() * 1e3;
        let name = path.display().to_string();
        let mut c = self
            .classify_rgb(&name, &img, k, keep_logits)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        c.preprocess_ms += decode_ms;
        Ok(c)
    }
}

/// One line of human-readable output.
pub fn format_text(c: &Classification) -> String {
    let mut s = format!(
        "{}: {}  [{:.1} ms]",
        c.image,
        crate::topk::format_top(&c.top),
        c.latency_ms
    );
    if let Some(l) = &c.logits {
        let l: Vec<String> = l.iter().map(|v| format!("{v:.4}")).collect();
        s.push_str(&format!("\n  logits: [{}]", l.join(", ")));
    }
    s
}
