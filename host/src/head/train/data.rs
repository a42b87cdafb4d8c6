//! The stratified validation split of the training rows.

use crate::rng::Rng;

/// Splits row indices into (train, valid), holding out `fraction` of each class (rounded, at least one
/// per class that has two or more rows when `fraction > 0`), chosen by `seed`.
pub fn stratified_split(labels: &[u32], fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for mut members in by_class {
        rng.shuffle(&mut members);
        let mut take = (members.len() as f32 * fraction).round() as usize;
        if fraction > 0.0 && take == 0 && members.len() >= 2 {
            take = 1;
        }
        take = take.min(members.len().saturating_sub(1));
        valid.extend_from_slice(&members[..take]);
        train.extend_from_slice(&members[take..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let labels: Vec<u32> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let (train, valid) = stratified_split(&labels, 0.1, 42);
        assert_eq!(train.len() + valid.len(), 100);
        assert_eq!(valid.iter().filter(|&&i| labels[i] == 0).count(), 8);
        assert_eq!(valid.iter().filter(|&&i| labels[i] == 1).count(), 2);
        assert!(valid.iter().all(|i| !train.contains(i)));
        assert_eq!(
            stratified_split(&labels, 0.1, 42),
            (train.clone(), valid.clone())
        );
        assert_ne!(stratified_split(&labels, 0.1, 43).1, valid);
        assert!(stratified_split(&labels, 0.0, 42).1.is_empty());
    }
}
