//! From logits to answers: a numerically stable soft-max and the k best classes.

use serde::Serialize;

/// One ranked class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub index: usize,
    pub label: String,
    pub score: f32,
}

/// Soft-max of `logits` (the maximum is subtracted first, so large logits do not overflow).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Indices of the `k` largest values, largest first; ties keep the lower index first.
pub fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The classes as one line of text: `tabby (0.912), tiger cat (0.051)`.
pub fn format_top(top: &[Prediction]) -> String {
    let parts: Vec<String> = top
        .iter()
        .map(|p| format!("{} ({:.3})", p.label, p.score))
        .collect();
    parts.join(", ")
}

/// The `k` most probable classes of `logits`, with soft-max scores.
pub fn top_k(logits: &[f32], labels: &[String], k: usize) -> Vec<Prediction> {
    let probs = softmax(logits);
    top_indices(&probs, k)
        .into_iter()
        .map(|i| Prediction {
            index: i,
            label: labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
            score: probs[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p = softmax(&[1000.0, 1000.0, 999.0]);
        assert!(p.iter().all(|v| v.is_finite()));
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(p[0], p[1]);
        assert!(p[2] < p[0]);
    }

    #[test]
    fn top_k_orders_by_score_then_index() {
        let labels: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let t = top_k(&[0.5, 3.0, 3.0, -1.0], &labels, 3);
        assert_eq!(t.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(t[0].label, "b");
        assert_eq!(top_k(&[1.0], &labels, 5).len(), 1);
    }
}
