//! Tasks as data: what distinguishes one LunarLander variant from another.

use serde::{Deserialize, Serialize};

/// One task of the multi-task benchmark: LunarLander with its own gravity, wind and time limit.
///
/// The three defaults are [`TaskSpec::standard`], [`TaskSpec::windy`] and [`TaskSpec::heavy`];
/// users define more in TOML (e.g. a `windy_strong` with `wind_power = 30`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Name used in configs, logs and plots.
    pub name: String,
    /// World gravity along y in m/s² (negative pulls down). Gymnasium's default is −10.
    pub gravity: f64,
    /// Half-width of the uniform lateral wind force in newtons: every step draws
    /// `w ~ U(−wind_power, wind_power)` from the env's RNG and pushes the lander with `(w, 0)`.
    /// Zero means no wind and no draw.
    #[serde(default)]
    pub wind_power: f64,
    /// Time limit applied by whoever runs episodes (the env itself never truncates).
    pub max_episode_steps: usize,
    /// Blow only while neither leg touches the ground, so a windy lander can come to rest.
    /// Off by default: the published windy results were made with wind on the ground too.
    /// The wind is still drawn every step, so the random stream does not depend on contacts.
    #[serde(default)]
    pub wind_airborne_only: bool,
}

impl TaskSpec {
    /// Gymnasium's LunarLander-v3: gravity −10, no wind, 1000 steps.
    pub fn standard() -> Self {
        Self {
            name: "standard".into(),
            gravity: -10.0,
            wind_power: 0.0,
            max_episode_steps: 1000,
            wind_airborne_only: false,
        }
    }

    /// Uniform ±20 N lateral wind every step, 400 steps.
    pub fn windy() -> Self {
        Self {
            name: "windy".into(),
            wind_power: 20.0,
            max_episode_steps: 400,
            ..Self::standard()
        }
    }

    /// Gravity ×1.25 (−12.5), 800 steps.
    pub fn heavy() -> Self {
        Self {
            name: "heavy".into(),
            gravity: -12.5,
            max_episode_steps: 800,
            ..Self::standard()
        }
    }

    /// The three default tasks in task-id order (standard 0, windy 1, heavy 2).
    pub fn defaults() -> Vec<Self> {
        vec![Self::standard(), Self::windy(), Self::heavy()]
    }

    /// One of the default tasks by name.
    pub fn by_name(name: &str) -> Option<Self> {
        Self::defaults().into_iter().find(|t| t.name == name)
    }

    /// Checks that the values describe a runnable task; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name: must not be empty".into());
        }
        if !self.gravity.is_finite() || self.gravity >= 0.0 || self.gravity < -100.0 {
            return Err(format!(
                "gravity = {}: must be negative and ≥ −100",
                self.gravity
            ));
        }
        if !self.wind_power.is_finite() || self.wind_power < 0.0 || self.wind_power > 1000.0 {
            return Err(format!(
                "wind_power = {}: must be in [0, 1000]",
                self.wind_power
            ));
        }
        if self.max_episode_steps == 0 {
            return Err("max_episode_steps = 0: must be ≥ 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_three_tasks() {
        let names: Vec<_> = TaskSpec::defaults().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["standard", "windy", "heavy"]);
        assert_eq!(TaskSpec::windy().wind_power, 20.0);
        assert_eq!(TaskSpec::heavy().gravity, -12.5);
        assert_eq!(TaskSpec::heavy().max_episode_steps, 800);
        assert!(TaskSpec::defaults().iter().all(|t| t.validate().is_ok()));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = TaskSpec {
            gravity: 1.0,
            ..TaskSpec::standard()
        };
        assert!(bad.validate().unwrap_err().starts_with("gravity"));
        let bad = TaskSpec {
            wind_power: -1.0,
            ..TaskSpec::standard()
        };
        assert!(bad.validate().unwrap_err().starts_with("wind_power"));
    }
}
