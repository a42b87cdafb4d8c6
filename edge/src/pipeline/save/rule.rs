//! `--capture-when`: which frames are worth saving.

/// Which frames to save.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SaveRule {
    /// The top score is below this bound: the model was unsure.
    Uncertain(f32),
    /// The bundle's rejection called the frame none of the labels.
    Unknown,
    /// A label's event fired at this frame.
    Event,
    /// Every N-th classified frame.
    Every(u64),
}

impl std::str::FromStr for SaveRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = match s.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (s, None),
        };
        match (name, value) {
            ("uncertain", None) => Ok(SaveRule::Uncertain(0.7)),
            ("uncertain", Some(v)) => v
                .parse::<f32>()
                .ok()
                .filter(|b| *b > 0.0 && *b <= 1.0)
                .map(SaveRule::Uncertain)
                .ok_or_else(|| {
                    format!("uncertain:{v}: the bound is a score in (0, 1], e.g. uncertain:0.7")
                }),
            ("unknown", None) => Ok(SaveRule::Unknown),
            ("event", None) => Ok(SaveRule::Event),
            ("every", Some(n)) => n
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(SaveRule::Every)
                .ok_or_else(|| format!("every:{n}: N is a whole number above 0, e.g. every:30")),
            _ => Err(format!(
                "{s:?}: one of uncertain, uncertain:BOUND, unknown, event, every:N"
            )),
        }
    }
}

impl SaveRule {
    pub(super) fn name(self) -> String {
        match self {
            SaveRule::Uncertain(b) => format!("uncertain:{b}"),
            SaveRule::Unknown => "unknown".into(),
            SaveRule::Event => "event".into(),
            SaveRule::Every(n) => format!("every:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!("unknown".parse(), Ok(SaveRule::Unknown));
        assert_eq!("event".parse(), Ok(SaveRule::Event));
        assert_eq!("every:30".parse(), Ok(SaveRule::Every(30)));
        assert_eq!("uncertain".parse(), Ok(SaveRule::Uncertain(0.7)));
        assert_eq!("uncertain:0.6".parse(), Ok(SaveRule::Uncertain(0.6)));
        for bad in ["every:0", "every", "uncertain:2", "sometimes"] {
            let error = bad.parse::<SaveRule>().unwrap_err();
            assert!(
                error.contains(bad.split(':').next().unwrap_or(bad)),
                "{error}"
            );
        }
    }
}
