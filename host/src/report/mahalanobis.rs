//! The Mahalanobis candidate of `evaluate --ood` (Lee et al. 2018): class means and one shared covariance of
//! the pooled backbone features, the smallest class-conditional distance as the score. Measured, not exported:
//! it accepts flat, empty frames (docs/rejection.md).

use rayon::prelude::*;

use crate::features::FeatureRows;

/// Class means and the inverse of one shared, shrunk covariance, on pooled (not normalised) features.
pub struct Mahalanobis {
    means: Vec<Vec<f64>>,
    /// Lower Cholesky factor of the shrunk covariance, `[dim, dim]` row-major.
    cholesky: Vec<f64>,
    dim: usize,
}

impl Mahalanobis {
    /// Fits the class means and the shared covariance on `rows` cached with `shape`.
    pub fn fit(rows: &FeatureRows, shape: &[usize], classes: usize) -> Self {
        let pooled = pooled(rows, shape);
        let dim = pooled.first().map_or(0, Vec::len);
        let mut means = vec![vec![0.0f64; dim]; classes];
        let mut counts = vec![0usize; classes];
        for (x, &label) in pooled.iter().zip(&rows.labels) {
            let c = label as usize;
            counts[c] += 1;
            means[c]
                .iter_mut()
                .zip(x)
                .for_each(|(m, v)| *m += *v as f64);
        }
        for (m, &n) in means.iter_mut().zip(&counts) {
            m.iter_mut().for_each(|v| *v /= n.max(1) as f64);
        }
        // Shared covariance of the centred rows, accumulated in f64.
        let centred: Vec<Vec<f64>> = pooled
            .iter()
            .zip(&rows.labels)
            .map(|(x, &l)| {
                x.iter()
                    .zip(&means[l as usize])
                    .map(|(v, m)| *v as f64 - m)
                    .collect()
            })
            .collect();
        let n = centred.len().max(2) as f64;
        let mut covariance: Vec<f64> = (0..dim * dim)
            .into_par_iter()
            .map(|k| {
                let (i, j) = (k / dim, k % dim);
                centred.iter().map(|r| r[i] * r[j]).sum::<f64>() / (n - 1.0)
            })
            .collect();
        // Shrinkage (Ledoit–Wolf's target, a fixed 10 % weight): with about as many photos as channels the
        // sample covariance is near-singular.
        let mean_variance =
            (0..dim).map(|i| covariance[i * dim + i]).sum::<f64>() / dim.max(1) as f64;
        for i in 0..dim {
            for j in 0..dim {
                covariance[i * dim + j] *= 0.9;
            }
            covariance[i * dim + i] += 0.1 * mean_variance.max(1e-12);
        }
        Mahalanobis {
            means,
            cholesky: cholesky(covariance, dim),
            dim,
        }
    }

    /// The smallest class-conditional distance of every row.
    pub fn scores(&self, rows: &FeatureRows, shape: &[usize]) -> Vec<f32> {
        pooled(rows, shape)
            .par_iter()
            .map(|x| {
                self.means
                    .iter()
                    .map(|m| {
                        let d: Vec<f64> = x.iter().zip(m).map(|(v, m)| *v as f64 - m).collect();
                        // dᵀ Σ⁻¹ d = |L⁻¹ d|² with Σ = L Lᵀ.
                        let y = forward_substitute(&self.cholesky, self.dim, &d);
                        y.iter().map(|v| v * v).sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min) as f32
            })
            .collect()
    }
}

fn pooled(rows: &FeatureRows, shape: &[usize]) -> Vec<Vec<f32>> {
    rows.features
        .par_chunks(rows.dim.max(1))
        .map(|row| crate::features::pooling::global_average_pool(row, shape))
        .collect()
}

/// Lower-triangular L with `a = L Lᵀ` (`a` symmetric positive definite, `[n, n]` row-major).
fn cholesky(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for j in 0..n {
        let mut diagonal = a[j * n + j];
        for k in 0..j {
            diagonal -= a[j * n + k] * a[j * n + k];
        }
        let diagonal = diagonal.max(1e-18).sqrt();
        a[j * n + j] = diagonal;
        let column: Vec<f64> = (j + 1..n)
            .into_par_iter()
            .map(|i| {
                let mut v = a[i * n + j];
                for k in 0..j {
                    v -= a[i * n + k] * a[j * n + k];
                }
                v / diagonal
            })
            .collect();
        for (offset, v) in column.into_iter().enumerate() {
            a[(j + 1 + offset) * n + j] = v;
        }
        for k in j + 1..n {
            a[j * n + k] = 0.0;
        }
    }
    a
}

/// `y` with `L y = b`, L lower-triangular.
fn forward_substitute(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut v = b[i];
        for k in 0..i {
            v -= l[i * n + k] * y[k];
        }
        y[i] = v / l[i * n + i];
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        // a = [[4, 2], [2, 3]] = L Lᵀ with L = [[2, 0], [1, √2]].
        let l = cholesky(vec![4.0, 2.0, 2.0, 3.0], 2);
        assert!((l[0] - 2.0).abs() < 1e-12 && l[1] == 0.0);
        assert!((l[2] - 1.0).abs() < 1e-12 && (l[3] - 2f64.sqrt()).abs() < 1e-12);
        // dᵀ a⁻¹ d for d = [2, 1]: a⁻¹ = [[3, -2], [-2, 4]] / 8 → (12 − 8 + 4) / 8 = 1.
        let y = forward_substitute(&l, 2, &[2.0, 1.0]);
        assert!((y.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
