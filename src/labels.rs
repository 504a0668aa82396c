//! Class names for a model's outputs: the model's own labels when it carries them, ImageNet-1k's
//! for a 1000-class model that does not, else the class indices.

/// The 1000 ImageNet-1k class names in index order (torchvision's list; mmcls uses the same).
pub const IMAGENET_CLASSES: &str = include_str!("imagenet_classes.txt");

/// Names for `num_classes` outputs.
pub fn resolve(from_model: Option<&[String]>, num_classes: usize) -> Vec<String> {
    match from_model {
        Some(l) if l.len() == num_classes => return l.to_vec(),
        Some(l) => log::warn!(
            "the model names {} classes but has {} outputs; using indices",
            l.len(),
            num_classes
        ),
        None => {}
    }
    if num_classes == 1000 {
        return IMAGENET_CLASSES.lines().map(str::to_string).collect();
    }
    (0..num_classes).map(|i| i.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_names_for_1000_classes() {
        let l = resolve(None, 1000);
        assert_eq!(l.len(), 1000);
        assert_eq!(l[0], "tench");
        assert_eq!(l[999], "toilet tissue");
    }

    #[test]
    fn model_labels_win_and_mismatches_fall_back() {
        let own = vec!["a".to_string(), "b".to_string()];
        assert_eq!(resolve(Some(&own), 2), own);
        assert_eq!(resolve(Some(&own), 3), vec!["0", "1", "2"]);
        assert_eq!(resolve(None, 2), vec!["0", "1"]);
    }
}
