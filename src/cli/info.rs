//! `resnext-edge info`: every node of a model's optimized plan and what runs it (the native
//! kernel set and function, or stock tract), as text or JSON.

use super::Kernels;
use anyhow::Context;
use resnext_edge::model::Model;

/// `info`: every node of the optimized plan with what runs it.
pub fn run(path: &std::path::Path, kernels: Kernels, json: bool) -> anyhow::Result<()> {
    let model = Model::load_with(path, kernels.backend()).context("cannot load the model")?;
    let layers: Vec<_> = model
        .typed_model()
        .nodes()
        .iter()
        .filter_map(|node| {
            resnext_edge::layers::layer(node)
                .map(|l| serde_json::json!({ "name": node.name, "op": l.kind, "kernel": l.kernel }))
        })
        .collect();
    let native = layers
        .iter()
        .filter(|l| l["kernel"].as_str().unwrap_or("").starts_with("native"))
        .count();
    if json {
        let v = serde_json::json!({
            "model": path.display().to_string(),
            "kernels": kernels.describe(),
            "native_layers": native,
            "layers": layers,
        });
        out!("{v}");
    } else {
        out!(
            "{}: {} nodes, {native} on native kernels ({})",
            path.display(),
            layers.len(),
            kernels.describe()
        );
        for l in &layers {
            out!(
                "{:<40} {:<36} {}",
                l["name"].as_str().unwrap_or(""),
                l["op"].as_str().unwrap_or(""),
                l["kernel"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
