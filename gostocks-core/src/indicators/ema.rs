/// Exponential moving average of bar closes with span `N`: `a = 2 / (N + 1)`,
/// `ema_k = a·close_k + (1 − a)·ema_{k−1}`, and the first value is the first close.
///
/// ```
/// use gostocks_core::indicators::Ema;
/// let mut ema = Ema::new(3);
/// assert_eq!(ema.update(10.0), 10.0);
/// assert_eq!(ema.update(20.0), 15.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ema {
    alpha: f64,
    value: Option<f64>,
}

impl Ema {
    /// A fresh average with span `span` (≥ 1).
    pub fn new(span: u32) -> Ema {
        Ema {
            alpha: 2.0 / (f64::from(span.max(1)) + 1.0),
            value: None,
        }
    }

    /// Folds in the next close and returns the new average.
    pub fn update(&mut self, close: f64) -> f64 {
        let v = match self.value {
            None => close,
            Some(prev) => self.alpha * close + (1.0 - self.alpha) * prev,
        };
        self.value = Some(v);
        v
    }

    /// The current value, if any close has been seen.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}
