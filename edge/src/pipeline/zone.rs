//! What of each frame the model judges: the whole frame, one region of it (`--roi`), or named zones
//! (`--zone NAME=x,y,w,h`), each cropped from the decoded frame before preprocessing, so the model sees a zone
//! as it would see a photo. Each zone has its own smoothing, events and unknown-scene state (`ZoneState`):
//! a cat at the bowl and a cat at the door are two events, not one label fighting over one frame.

use std::str::FromStr;

use lookout_shared::{Region, RegionError};

use super::{FrameChanges, SceneChange, Sink};
use crate::smoothing::{EventTrigger, Smoother, Trigger};

/// A named region of the frame, classified on its own at every frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Letters, digits, `-` and `_`: it becomes an MQTT topic level, an id, a file-name part.
    pub name: String,
    /// Where it is in the frame.
    pub region: Region,
}

/// Why a `--zone` (or a set of them) is refused. One line each, naming the zone.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZoneError {
    /// Not `NAME=x,y,w,h`.
    #[error(
        "--zone '{0}': expected NAME=x,y,w,h (fractions of the frame), e.g. bowl=0.25,0.5,0.5,0.5"
    )]
    Syntax(String),
    /// The name has other characters than letters, digits, `-` and `_`.
    #[error("--zone name '{0}': use only letters, digits, - and _ (it becomes an MQTT topic level and part of file names)")]
    BadName(String),
    /// The region is not one.
    #[error("--zone {name}: {source}")]
    Region {
        /// The zone.
        name: String,
        /// What is wrong with its region.
        source: RegionError,
    },
    /// Two zones have one name.
    #[error("--zone {0} is given twice: each zone needs a name of its own")]
    Duplicate(String),
    /// Two names that become one id (case, `-` and `_` are not told apart in MQTT ids and Home Assistant).
    #[error(
        "--zone {0} and --zone {1} become the same id in MQTT and Home Assistant ({2}): rename one"
    )]
    SameId(String, String, String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl FromStr for Zone {
    type Err = ZoneError;

    fn from_str(text: &str) -> Result<Zone, ZoneError> {
        let (name, region) = text
            .split_once('=')
            .ok_or_else(|| ZoneError::Syntax(text.into()))?;
        let name = name.trim();
        if !valid_name(name) {
            return Err(if name.is_empty() {
                ZoneError::Syntax(text.into())
            } else {
                ZoneError::BadName(name.into())
            });
        }
        let region = region.parse().map_err(|source| ZoneError::Region {
            name: name.into(),
            source,
        })?;
        Ok(Zone {
            name: name.into(),
            region,
        })
    }
}

/// What of each frame is classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Regions {
    /// One region ([`Region::FULL`] for the whole frame, or `--roi`); reports carry no zone.
    Frame(Region),
    /// Named zones, each classified at every frame; reports carry the zone's name.
    Zones(Vec<Zone>),
}

impl Default for Regions {
    fn default() -> Self {
        Regions::Frame(Region::FULL)
    }
}

impl Regions {
    /// Zones, checked: no name twice (no zones at all is the whole frame).
    pub fn zones(zones: Vec<Zone>) -> Result<Regions, ZoneError> {
        for (i, zone) in zones.iter().enumerate() {
            if zones[..i].iter().any(|z| z.name == zone.name) {
                return Err(ZoneError::Duplicate(zone.name.clone()));
            }
            let id = lookout_fleet::target::slug(&zone.name);
            if let Some(other) = zones[..i]
                .iter()
                .find(|z| lookout_fleet::target::slug(&z.name) == id)
            {
                return Err(ZoneError::SameId(other.name.clone(), zone.name.clone(), id));
            }
        }
        if zones.is_empty() {
            return Ok(Regions::default());
        }
        Ok(Regions::Zones(zones))
    }

    /// The zones' names, in order (empty without zones).
    pub fn names(&self) -> Vec<String> {
        match self {
            Regions::Frame(_) => Vec::new(),
            Regions::Zones(zones) => zones.iter().map(|z| z.name.clone()).collect(),
        }
    }

    /// The zones (empty without zones).
    pub fn as_zones(&self) -> &[Zone] {
        match self {
            Regions::Frame(_) => &[],
            Regions::Zones(zones) => zones,
        }
    }
}

/// One zone's (or the whole frame's) running state: its smoother, events and unknown-scene watch.
pub(crate) struct ZoneState {
    /// `None` without zones.
    pub name: Option<String>,
    pub region: Region,
    pub smoother: Smoother,
    pub trigger: EventTrigger,
    pub scene: SceneWatch,
    pub counts: ZoneCounts,
    /// With `--motion`: whether the model runs on this region at this frame, and its last answer, which
    /// stands for the frames it does not run on.
    pub gate: Option<super::motion::MotionGate>,
    pub last: Option<lookout_runtime::Prediction>,
}

/// What one zone saw over the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneCounts {
    /// Frames this zone was classified in.
    pub classified: u64,
    /// Of them, none of the labels.
    pub unknown: u64,
    /// Of them, the empty scene (the bundle's background label).
    pub background: u64,
    /// Events fired in this zone.
    pub events: u64,
}

impl ZoneState {
    /// The state of each region to classify, in order.
    pub fn all(regions: &Regions, labels: usize, options: &super::WatchOptions) -> Vec<ZoneState> {
        let state = |name: Option<String>, region: Region| ZoneState {
            name,
            region,
            smoother: Smoother::new(options.smooth),
            trigger: EventTrigger::new(labels, options.threshold, options.hysteresis),
            scene: SceneWatch::new(options),
            counts: ZoneCounts::default(),
            gate: options.motion.map(|_| super::motion::MotionGate::default()),
            last: None,
        };
        match regions {
            Regions::Frame(region) => vec![state(None, *region)],
            Regions::Zones(zones) => zones
                .iter()
                .map(|z| state(Some(z.name.clone()), z.region))
                .collect(),
        }
    }

    /// A bundle with other labels was switched in: the old labels' events end now (the sinks hear each end,
    /// named by `changes`' old labels), and smoothing, events and the motion gate's last answer start again
    /// for the `labels` new ones. What the zone counted stays.
    pub fn relabel(
        &mut self,
        labels: usize,
        changes: &FrameChanges<'_>,
        options: &super::WatchOptions,
        sinks: &mut [&mut dyn Sink],
    ) {
        let ends = self.trigger.end_all(&self.smoother.mean());
        changes.tell(ends, self.name.as_deref(), sinks);
        self.smoother = Smoother::new(options.smooth);
        self.trigger = EventTrigger::new(labels, options.threshold, options.hysteresis);
        self.last = None;
    }

    /// Smooths one frame's votes and tells the sinks the label changes (and scene changes, when `on_unknown`);
    /// returns the events fired. A frame that is unknown or the empty scene votes for no label: its
    /// probabilities are for labels it is none of, so no sink can act on it by mistake.
    pub fn update(
        &mut self,
        prediction: &lookout_runtime::Prediction,
        changes: &FrameChanges<'_>,
        on_unknown: bool,
        sinks: &mut [&mut dyn Sink],
    ) -> u64 {
        self.counts.classified += 1;
        if prediction.unknown {
            self.counts.unknown += 1;
        } else if prediction.background {
            self.counts.background += 1;
        }
        let votes = if prediction.is_actionable() {
            prediction.probabilities.clone()
        } else {
            vec![0.0; prediction.probabilities.len()]
        };
        let smoothed = self.smoother.push(&votes);
        let fired = if self.smoother.is_full() {
            changes.tell(self.trigger.update(&smoothed), self.name.as_deref(), sinks)
        } else {
            0
        };
        self.counts.events += fired;
        if on_unknown {
            self.scene.update(
                prediction.unknown,
                changes.frame,
                self.name.as_deref(),
                sinks,
            );
        }
        fired
    }
}

/// Which labels are in an event now, per zone: what [`Sink::after_frame`] is given.
pub struct Active<'a> {
    pub(crate) zones: &'a [ZoneState],
}

impl Active<'_> {
    /// Whether `label` is in an event in `zone`; `None` asks about any zone (without zones: the frame).
    pub fn is_active(&self, zone: Option<&str>, label: usize) -> bool {
        self.zones
            .iter()
            .filter(|z| zone.is_none() || z.name.as_deref() == zone)
            .any(|z| z.trigger.is_active(label))
    }
}

/// The scene's "unknown" state: one more label, smoothed and triggered like the others.
pub(crate) struct SceneWatch {
    smoother: Smoother,
    trigger: EventTrigger,
}

impl SceneWatch {
    fn new(options: &super::WatchOptions) -> Self {
        SceneWatch {
            smoother: Smoother::new(options.smooth),
            trigger: EventTrigger::new(1, options.threshold, options.hysteresis),
        }
    }

    /// Adds one frame; tells the sinks when the scene became unknown or known again.
    fn update(
        &mut self,
        unknown: bool,
        frame: u64,
        zone: Option<&str>,
        sinks: &mut [&mut dyn Sink],
    ) {
        let fraction = self.smoother.push(&[f32::from(u8::from(unknown))]);
        if !self.smoother.is_full() {
            return;
        }
        for change in self.trigger.update(&fraction) {
            let (unknown, fraction) = match change {
                Trigger::Fired { score, .. } => (true, score),
                Trigger::Cleared { score, .. } => (false, score),
            };
            let change = SceneChange {
                unknown,
                frame,
                fraction,
                zone,
            };
            for sink in sinks.iter_mut() {
                sink.scene(&change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_parse_and_bad_ones_say_why_in_one_line() {
        let zone: Zone = "bowl=0.25,0.5,0.5,0.5".parse().expect("a zone");
        assert_eq!(zone.name, "bowl");
        assert_eq!(
            zone.region,
            Region::new(0.25, 0.5, 0.5, 0.5).expect("region")
        );
        for (text, want) in [
            ("bowl", "expected NAME=x,y,w,h"),
            ("=0,0,1,1", "expected NAME=x,y,w,h"),
            ("my bowl=0,0,1,1", "use only letters"),
            ("a/b=0,0,1,1", "use only letters"),
            ("door=0,0,1", "--zone door: a region is four numbers"),
            (
                "door=0.5,0,0.6,1",
                "--zone door: region 0.5,0,0.6,1 is not inside",
            ),
        ] {
            let error = text.parse::<Zone>().expect_err(text).to_string();
            assert!(error.contains(want), "{text}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
        let twice =
            ["a=0,0,0.5,1", "b=0.5,0,0.5,1", "a=0,0,1,1"].map(|t| t.parse::<Zone>().expect(t));
        assert_eq!(
            Regions::zones(twice.to_vec()),
            Err(ZoneError::Duplicate("a".into()))
        );
        let alike = ["door-1=0,0,0.5,1", "Door_1=0.5,0,0.5,1"].map(|t| t.parse::<Zone>().expect(t));
        let error = Regions::zones(alike.to_vec())
            .expect_err("one id")
            .to_string();
        assert!(
            error.contains("door-1 and --zone Door_1 become the same id")
                && error.contains("door_1"),
            "{error}"
        );
        assert_eq!(
            Regions::zones(twice[..2].to_vec())
                .expect("two zones")
                .names(),
            ["a", "b"]
        );
    }
}
