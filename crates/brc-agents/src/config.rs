//! Agent hyperparameters as they appear in the `[agent]` section of a run config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A config value that is out of range: `key` is the path below `agent.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path relative to the section (e.g. `num_atoms`, `per_task.windy.lr`).
    pub key: String,
    /// The offending value as written.
    pub value: String,
    /// What it must be.
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.message)
    }
}

/// The most critics a BRC ensemble may have (a sanity bound: each costs a full network).
pub const MAX_CRITICS: usize = 8;

fn issue(key: impl Into<String>, value: impl std::fmt::Display, message: &str) -> ConfigIssue {
    ConfigIssue {
        key: key.into(),
        value: value.to_string(),
        message: message.into(),
    }
}

fn positive(key: &str, v: f64) -> Result<(), ConfigIssue> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(issue(key, v, "must be a finite number > 0"))
    }
}

fn non_negative(key: &str, v: f64) -> Result<(), ConfigIssue> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(issue(key, v, "must be a finite number ≥ 0"))
    }
}

fn unit_interval(key: &str, v: f64) -> Result<(), ConfigIssue> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(issue(key, v, "must be in [0, 1]"))
    }
}

/// The ε-greedy schedule: ε starts at `start` and is multiplied by `decay` after every episode
/// (of the task, for per-task learners) until it reaches `end`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Exploration {
    /// Initial ε.
    pub start: f64,
    /// Floor of ε.
    pub end: f64,
    /// Per-episode multiplicative decay.
    pub decay: f64,
}

/// How the per-task gradients of one update become the update (`agent.gradient`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradientMethod {
    /// One loss over the whole batch (its mean), the usual update.
    #[default]
    Mean,
    /// PCGrad: conflicting components projected away (Yu et al. 2020).
    Pcgrad,
    /// GradNorm: learned task-loss weights (Chen et al. 2018).
    Gradnorm,
    /// CAGrad: conflict-averse update near the mean gradient (Liu et al. 2021).
    Cagrad,
}

impl GradientMethod {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            GradientMethod::Mean => "mean",
            GradientMethod::Pcgrad => "pcgrad",
            GradientMethod::Gradnorm => "gradnorm",
            GradientMethod::Cagrad => "cagrad",
        }
    }
}

/// How PCGrad adds up the projected task gradients (`agent.pcgrad_reduction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcgradReduction {
    /// Σ gᵢ′ (the paper).
    #[default]
    Sum,
    /// The mean of the gᵢ′ (the earlier Python project).
    Mean,
}

/// The gradient method and its settings, as the Shared DQN and BRC configs hold them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientSettings {
    /// The method.
    pub method: GradientMethod,
    /// PCGrad's sum or mean.
    pub pcgrad_reduction: PcgradReduction,
    /// GradNorm's Adam learning rate for the task weights.
    pub gradnorm_lr: f64,
    /// CAGrad's trust-region size c.
    pub cagrad_c: f64,
}

impl Default for GradientSettings {
    fn default() -> Self {
        Self {
            method: GradientMethod::Mean,
            pcgrad_reduction: PcgradReduction::Sum,
            gradnorm_lr: 0.025,
            cagrad_c: 0.5,
        }
    }
}

impl GradientSettings {
    fn validate(&self) -> Result<(), ConfigIssue> {
        positive("gradnorm_lr", self.gradnorm_lr)?;
        non_negative("cagrad_c", self.cagrad_c)
    }
}

/// VarShare (`[agent.varshare]`, Shared DQN and BRC): every linear layer of the shared
/// network gets a task residual, W_m = θ + φ_m, and the loss adds β·KL (see
/// `brc_nn::task_residual`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VarShareConfig {
    /// `variational` (Gaussian residuals, Flipout, KL) or `l2` (deterministic residuals with
    /// the L2 penalty Σμ²/(2σ_prior²), the ablation).
    pub mode: brc_nn::ResidualMode,
    /// Standard deviation of the zero-mean prior N(0, σ_prior²).
    pub sigma_prior: f64,
    /// The posteriors' σ at the start (μ starts at 0: every task starts as the shared net).
    pub sigma_init: f64,
    /// Weight of the penalty: loss = TD loss + β · (KL summed over all adapter weights and
    /// tasks) / (number of adapter weights and tasks), i.e. β times the mean KL per adapter
    /// weight, so one β fits every network size.
    pub beta: f64,
    /// Keep the task embedding (false: the residuals alone tell the tasks apart).
    pub keep_embedding: bool,
    /// μ entries with |μ| below this count as pruned (parameter counts, sparsity logs).
    pub prune_threshold: f64,
}

impl Default for VarShareConfig {
    fn default() -> Self {
        Self {
            mode: brc_nn::ResidualMode::Variational,
            sigma_prior: 0.05,
            sigma_init: 1e-3,
            // β·KL ≈ 4% of BRC's first TD losses (configs/varshare.toml measures it).
            beta: 0.05,
            keep_embedding: true,
            prune_threshold: 1e-3,
        }
    }
}

impl VarShareConfig {
    fn validate(&self, gradient: GradientMethod) -> Result<(), ConfigIssue> {
        positive("varshare.sigma_prior", self.sigma_prior)?;
        positive("varshare.sigma_init", self.sigma_init)?;
        non_negative("varshare.beta", self.beta)?;
        non_negative("varshare.prune_threshold", self.prune_threshold)?;
        if gradient != GradientMethod::Mean {
            return Err(issue(
                "gradient",
                format!("{:?}", gradient.name()),
                "must be \"mean\" with [agent.varshare] (the combiners know no task residuals)",
            ));
        }
        Ok(())
    }
}

/// The agent and its hyperparameters, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentConfig {
    /// See [`IndependentDqnConfig`].
    IndependentDqn(IndependentDqnConfig),
    /// See [`SharedDqnConfig`].
    SharedDqn(SharedDqnConfig),
    /// See [`BrcConfig`].
    Brc(BrcConfig),
}

impl AgentConfig {
    /// The agent kind.
    pub fn kind(&self) -> crate::AgentKind {
        match self {
            AgentConfig::IndependentDqn(_) => crate::AgentKind::IndependentDqn,
            AgentConfig::SharedDqn(_) => crate::AgentKind::SharedDqn,
            AgentConfig::Brc(_) => crate::AgentKind::Brc,
        }
    }

    /// The VarShare settings (`None`: no task residuals; always for Independent DQN).
    pub fn varshare(&self) -> Option<&VarShareConfig> {
        match self {
            AgentConfig::IndependentDqn(_) => None,
            AgentConfig::SharedDqn(c) => c.varshare.as_ref(),
            AgentConfig::Brc(c) => c.varshare.as_ref(),
        }
    }

    /// Critics per value network: BRC's `critics`, 1 for the DQN agents.
    pub fn critics(&self) -> usize {
        match self {
            AgentConfig::Brc(c) => c.critics,
            _ => 1,
        }
    }

    /// The gradient method (`mean` for Independent DQN, which has no shared parameters).
    pub fn gradient(&self) -> GradientMethod {
        match self {
            AgentConfig::IndependentDqn(_) => GradientMethod::Mean,
            AgentConfig::SharedDqn(c) => c.gradient,
            AgentConfig::Brc(c) => c.gradient,
        }
    }

    /// Range checks; `task_names` are the run's tasks (per-task overrides must name one).
    pub fn validate(&self, task_names: &[String]) -> Result<(), ConfigIssue> {
        match self {
            AgentConfig::IndependentDqn(c) => c.validate(task_names),
            AgentConfig::SharedDqn(c) => c.validate(),
            AgentConfig::Brc(c) => c.validate(),
        }
    }
}

/// Independent DQN: one QMlp, target and Adam per task (the predecessor's setup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndependentDqnConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f64,
    /// Per-task overrides, keyed by task name.
    pub per_task: BTreeMap<String, TaskOverrides>,
}

impl Default for IndependentDqnConfig {
    fn default() -> Self {
        Self {
            lr: 5e-4,
            grad_clip: 10.0,
            per_task: BTreeMap::new(),
        }
    }
}

impl IndependentDqnConfig {
    fn validate(&self, task_names: &[String]) -> Result<(), ConfigIssue> {
        positive("lr", self.lr)?;
        non_negative("grad_clip", self.grad_clip)?;
        for (task, o) in &self.per_task {
            let key = |k: &str| format!("per_task.{task}.{k}");
            if !task_names.contains(task) {
                return Err(issue(
                    format!("per_task.{task}"),
                    "{…}",
                    &format!("unknown task (the run's tasks: {})", task_names.join(", ")),
                ));
            }
            if let Some(lr) = o.lr {
                positive(&key("lr"), lr)?;
            }
            if let Some(d) = o.epsilon_decay {
                if !(d > 0.0 && d <= 1.0) {
                    return Err(issue(key("epsilon_decay"), d, "must be in (0, 1]"));
                }
            }
            if o.target_update_episodes == Some(0) {
                return Err(issue(key("target_update_episodes"), 0, "must be ≥ 1"));
            }
        }
        Ok(())
    }
}

/// Per-task hyperparameters of an Independent DQN learner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskOverrides {
    /// Adam learning rate.
    pub lr: Option<f64>,
    /// Per-episode ε decay.
    pub epsilon_decay: Option<f64>,
    /// Target copy every this many of the task's episodes.
    pub target_update_episodes: Option<usize>,
    /// Transitions of the task needed before its updates start.
    pub min_replay: Option<usize>,
}

/// Shared DQN: one SharedQMlp (8-d task embedding) for all tasks, mixed-task batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedDqnConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// Global gradient-norm clip (0: none, as the predecessor).
    pub grad_clip: f64,
    /// Drop the task embedding (one network that cannot tell the tasks apart).
    pub task_blind: bool,
    /// How per-task gradients combine: `mean` (one loss over the batch), `pcgrad`,
    /// `gradnorm` or `cagrad` (these need `training.sampling = "balanced"`).
    pub gradient: GradientMethod,
    /// PCGrad: `sum` (the paper) or `mean` (the earlier project) of the projected gradients.
    pub pcgrad_reduction: PcgradReduction,
    /// GradNorm: Adam learning rate of the task weights.
    pub gradnorm_lr: f64,
    /// CAGrad: trust-region size c (0 gives the mean gradient).
    pub cagrad_c: f64,
    /// VarShare's task residuals on the MLP (absent: a plain Shared DQN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub varshare: Option<VarShareConfig>,
}

impl Default for SharedDqnConfig {
    fn default() -> Self {
        Self {
            lr: 5e-4,
            grad_clip: 0.0,
            task_blind: false,
            gradient: GradientMethod::Mean,
            pcgrad_reduction: PcgradReduction::Sum,
            gradnorm_lr: 0.025,
            cagrad_c: 0.5,
            varshare: None,
        }
    }
}

impl SharedDqnConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        positive("lr", self.lr)?;
        non_negative("grad_clip", self.grad_clip)?;
        if let Some(v) = &self.varshare {
            if self.task_blind {
                return Err(issue(
                    "task_blind",
                    true,
                    "must be false with [agent.varshare] (use varshare.keep_embedding = false)",
                ));
            }
            v.validate(self.gradient)?;
        }
        self.gradient_settings().validate()
    }

    /// The gradient method and its settings.
    pub fn gradient_settings(&self) -> GradientSettings {
        GradientSettings {
            method: self.gradient,
            pcgrad_reduction: self.pcgrad_reduction,
            gradnorm_lr: self.gradnorm_lr,
            cagrad_c: self.cagrad_c,
        }
    }
}

/// BRC: BroNet + C51 (double-DQN action selection) + AdamW, as the design note specifies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrcConfig {
    /// Width of BroNet's hidden layers.
    pub hidden_dim: usize,
    /// Number of residual blocks.
    pub num_blocks: usize,
    /// Task-embedding size.
    pub embedding_dim: usize,
    /// The BRC paper's block `x + LN(fc2(ReLU(LN(fc1(x)))))` instead of the design note's.
    pub post_ln: bool,
    /// Number of C51 atoms.
    pub num_atoms: usize,
    /// Lowest atom.
    pub v_min: f64,
    /// Highest atom.
    pub v_max: f64,
    /// AdamW learning rate.
    pub lr: f64,
    /// The learning rate falls linearly with the run's training episodes, from `lr` at the
    /// first to `lr × lr_final_fraction` at the last: a lever against late-training swings of
    /// the greedy policy. 1 (the design note): constant.
    pub lr_final_fraction: f64,
    /// AdamW decoupled weight decay (set explicitly: candle's default would be 0.01).
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f64,
    /// Polyak target updates: after every update the target moves this fraction toward the
    /// online network. 0 (the design note): hard copies every `target_update_episodes`.
    pub target_tau: f64,
    /// Rewards are multiplied by this before the Bellman target, so returns fit the support
    /// (the BRC paper scales returns into ±10); `v_min`/`v_max` are in scaled units and
    /// reported Q-values are scaled back.
    pub reward_scale: f64,
    /// Unit-L2-norm task embeddings (the BRC paper).
    pub unit_norm_embedding: bool,
    /// `true` (the design note): C51 return distributions and cross-entropy. `false`: the
    /// ablation for "is categorical better?" — the same BroNet with one scalar Q per action,
    /// trained with the double-DQN mean-squared TD error (`num_atoms`, `v_min` and `v_max`
    /// are then unused).
    pub categorical: bool,
    /// How per-task gradients combine: `mean` (one loss over the batch), `pcgrad`,
    /// `gradnorm` or `cagrad` (these need `training.sampling = "balanced"`).
    pub gradient: GradientMethod,
    /// PCGrad: `sum` (the paper) or `mean` (the earlier project) of the projected gradients.
    pub pcgrad_reduction: PcgradReduction,
    /// GradNorm: Adam learning rate of the task weights.
    pub gradnorm_lr: f64,
    /// CAGrad: trust-region size c (0 gives the mean gradient).
    pub cagrad_c: f64,
    /// VarShare's task residuals on BroNet (absent: a plain BRC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub varshare: Option<VarShareConfig>,
    /// Critics in the ensemble (the BRC code's default is 2). Each is a BroNet with its own
    /// initialisation and target copy; all learn toward one target, the mean of the target
    /// critics' distributions at the action the mean online critic picks, and act on the mean
    /// Q. 1 (the design note): a single critic.
    pub critics: usize,
}

impl Default for BrcConfig {
    fn default() -> Self {
        Self {
            hidden_dim: 256,
            num_blocks: 3,
            embedding_dim: 32,
            post_ln: false,
            num_atoms: 51,
            v_min: -100.0,
            v_max: 300.0,
            lr: 3e-4,
            lr_final_fraction: 1.0,
            weight_decay: 1e-4,
            grad_clip: 10.0,
            target_tau: 0.0,
            reward_scale: 1.0,
            unit_norm_embedding: false,
            categorical: true,
            gradient: GradientMethod::Mean,
            pcgrad_reduction: PcgradReduction::Sum,
            gradnorm_lr: 0.025,
            cagrad_c: 0.5,
            varshare: None,
            critics: 1,
        }
    }
}

impl BrcConfig {
    fn validate(&self) -> Result<(), ConfigIssue> {
        if self.hidden_dim == 0 {
            return Err(issue("hidden_dim", 0, "must be ≥ 1"));
        }
        if self.num_atoms < 2 {
            return Err(issue("num_atoms", self.num_atoms, "must be ≥ 2"));
        }
        if !(self.v_min.is_finite() && self.v_max.is_finite() && self.v_min < self.v_max) {
            return Err(issue(
                "v_min",
                self.v_min,
                &format!("must be finite and < v_max ({})", self.v_max),
            ));
        }
        positive("lr", self.lr)?;
        unit_interval("lr_final_fraction", self.lr_final_fraction)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("grad_clip", self.grad_clip)?;
        unit_interval("target_tau", self.target_tau)?;
        positive("reward_scale", self.reward_scale)?;
        if let Some(v) = &self.varshare {
            v.validate(self.gradient)?;
        }
        self.validate_critics()?;
        self.gradient_settings().validate()
    }

    fn validate_critics(&self) -> Result<(), ConfigIssue> {
        if !(1..=MAX_CRITICS).contains(&self.critics) {
            return Err(issue(
                "critics",
                self.critics,
                &format!("must be 1 to {MAX_CRITICS}"),
            ));
        }
        if self.critics > 1 && (self.varshare.is_some() || self.gradient != GradientMethod::Mean) {
            return Err(issue(
                "critics",
                self.critics,
                "must be 1 with [agent.varshare] or a gradient method other than \"mean\" \
                 (neither is built for an ensemble)",
            ));
        }
        Ok(())
    }

    /// The gradient method and its settings.
    pub fn gradient_settings(&self) -> GradientSettings {
        GradientSettings {
            method: self.gradient,
            pcgrad_reduction: self.pcgrad_reduction,
            gradnorm_lr: self.gradnorm_lr,
            cagrad_c: self.cagrad_c,
        }
    }

    /// The network this config describes, for `num_tasks` tasks.
    pub fn network(&self, num_tasks: usize) -> brc_nn::BroNetConfig {
        let varshare = self.varshare.as_ref();
        brc_nn::BroNetConfig {
            num_tasks,
            embedding_dim: match varshare {
                Some(v) if !v.keep_embedding => 0,
                _ => self.embedding_dim,
            },
            task_residuals: varshare.map(|v| v.mode),
            hidden_dim: self.hidden_dim,
            num_blocks: self.num_blocks,
            num_atoms: if self.categorical { self.num_atoms } else { 1 },
            post_ln: self.post_ln,
            unit_norm_embedding: self.unit_norm_embedding,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks() -> Vec<String> {
        ["standard", "windy", "heavy"].map(String::from).to_vec()
    }

    #[test]
    fn defaults_follow_the_design_note() {
        let c = BrcConfig::default();
        assert_eq!((c.num_atoms, c.v_min, c.v_max), (51, -100.0, 300.0));
        assert_eq!((c.lr, c.weight_decay, c.grad_clip), (3e-4, 1e-4, 10.0));
        assert_eq!(c.network(3).hidden_dim, 256);
        assert_eq!(SharedDqnConfig::default().lr, 5e-4);
        assert_eq!(IndependentDqnConfig::default().grad_clip, 10.0);
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let c = AgentConfig::Brc(BrcConfig {
            num_atoms: 1,
            ..Default::default()
        });
        let e = c.validate(&tasks()).unwrap_err();
        assert_eq!(e.to_string(), "num_atoms = 1: must be ≥ 2");
        let c = AgentConfig::Brc(BrcConfig {
            v_min: 10.0,
            v_max: 0.0,
            ..Default::default()
        });
        assert_eq!(c.validate(&tasks()).unwrap_err().key, "v_min");
        let mut per_task = BTreeMap::new();
        per_task.insert(
            "moon".to_string(),
            TaskOverrides {
                lr: Some(1e-3),
                ..Default::default()
            },
        );
        let c = AgentConfig::IndependentDqn(IndependentDqnConfig {
            per_task,
            ..Default::default()
        });
        assert_eq!(c.validate(&tasks()).unwrap_err().key, "per_task.moon");
    }

    #[test]
    fn gradient_settings_parse_and_bad_values_name_their_key() {
        let c: AgentConfig = serde_json::from_str(
            r#"{"kind": "shared_dqn", "gradient": "pcgrad", "pcgrad_reduction": "mean"}"#,
        )
        .unwrap();
        let AgentConfig::SharedDqn(s) = &c else {
            panic!("shared_dqn")
        };
        assert_eq!(s.gradient, GradientMethod::Pcgrad);
        assert_eq!(s.pcgrad_reduction, PcgradReduction::Mean);
        assert_eq!((s.gradnorm_lr, s.cagrad_c), (0.025, 0.5));
        let e = serde_json::from_str::<AgentConfig>(r#"{"kind": "brc", "gradient": "pcgard"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pcgard") && e.contains("cagrad"), "{e}");
        let c = AgentConfig::Brc(BrcConfig {
            cagrad_c: -1.0,
            ..Default::default()
        });
        assert_eq!(
            c.validate(&tasks()).unwrap_err().to_string(),
            "cagrad_c = -1: must be a finite number ≥ 0"
        );
        let c = AgentConfig::SharedDqn(SharedDqnConfig {
            gradnorm_lr: 0.0,
            ..Default::default()
        });
        assert_eq!(c.validate(&tasks()).unwrap_err().key, "gradnorm_lr");
    }

    #[test]
    fn varshare_parses_with_defaults_and_every_bad_value_names_its_key() {
        let c: AgentConfig =
            serde_json::from_str(r#"{"kind": "brc", "varshare": {"beta": 0.1}}"#).unwrap();
        let v = c.varshare().expect("varshare set");
        assert_eq!(v.beta, 0.1);
        assert_eq!(v.mode, brc_nn::ResidualMode::Variational);
        assert_eq!(
            (v.sigma_prior, v.sigma_init, v.prune_threshold),
            (0.05, 1e-3, 1e-3)
        );
        assert!(v.keep_embedding);
        let AgentConfig::Brc(b) = &c else {
            panic!("brc")
        };
        assert_eq!(
            b.network(3).task_residuals,
            Some(brc_nn::ResidualMode::Variational)
        );
        assert_eq!(b.network(3).embedding_dim, 32);
        c.validate(&tasks()).unwrap();
        let blind: AgentConfig = serde_json::from_str(
            r#"{"kind": "brc", "varshare": {"mode": "l2", "keep_embedding": false}}"#,
        )
        .unwrap();
        let AgentConfig::Brc(b) = &blind else {
            panic!("brc")
        };
        assert_eq!(b.network(3).embedding_dim, 0);
        assert_eq!(b.network(3).task_residuals, Some(brc_nn::ResidualMode::L2));
        assert!(AgentConfig::Brc(BrcConfig::default()).varshare().is_none());

        let bad = |field: &str, kind: &str| {
            let text = format!(r#"{{"kind": "{kind}", "varshare": {{{field}}}}}"#);
            let c: AgentConfig = serde_json::from_str(&text).unwrap();
            c.validate(&tasks()).unwrap_err().to_string()
        };
        for kind in ["brc", "shared_dqn"] {
            assert_eq!(
                bad(r#""beta": -0.1"#, kind),
                "varshare.beta = -0.1: must be a finite number ≥ 0"
            );
            assert_eq!(
                bad(r#""sigma_prior": 0.0"#, kind),
                "varshare.sigma_prior = 0: must be a finite number > 0"
            );
            assert_eq!(
                bad(r#""sigma_init": -1e-3"#, kind),
                "varshare.sigma_init = -0.001: must be a finite number > 0"
            );
            assert_eq!(
                bad(r#""prune_threshold": -1.0"#, kind),
                "varshare.prune_threshold = -1: must be a finite number ≥ 0"
            );
            let text = format!(r#"{{"kind": "{kind}", "gradient": "pcgrad", "varshare": {{}}}}"#);
            let c: AgentConfig = serde_json::from_str(&text).unwrap();
            let e = c.validate(&tasks()).unwrap_err().to_string();
            assert!(
                e.starts_with("gradient = \"pcgrad\": must be \"mean\" with [agent.varshare]"),
                "{e}"
            );
        }
        let e = serde_json::from_str::<AgentConfig>(
            r#"{"kind": "brc", "varshare": {"mode": "bayes"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bayes") && e.contains("variational") && e.contains("l2"),
            "{e}"
        );
        let e = serde_json::from_str::<AgentConfig>(
            r#"{"kind": "shared_dqn", "varshare": {"betta": 0.1}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("betta"), "{e}");
    }

    #[test]
    fn critics_are_one_by_default_and_bad_counts_or_combinations_are_errors() {
        assert_eq!(BrcConfig::default().critics, 1);
        let check = |text: &str| {
            serde_json::from_str::<AgentConfig>(text)
                .unwrap()
                .validate(&tasks())
                .map_err(|e| e.to_string())
        };
        check(r#"{"kind": "brc", "critics": 2}"#).unwrap();
        assert_eq!(
            check(r#"{"kind": "brc", "critics": 0}"#).unwrap_err(),
            "critics = 0: must be 1 to 8"
        );
        assert_eq!(
            check(r#"{"kind": "brc", "critics": 9}"#).unwrap_err(),
            "critics = 9: must be 1 to 8"
        );
        for other in [r#""gradient": "pcgrad""#, r#""varshare": {}"#] {
            let e = check(&format!(r#"{{"kind": "brc", "critics": 2, {other}}}"#)).unwrap_err();
            assert!(e.starts_with("critics = 2: must be 1 with"), "{e}");
        }
    }

    #[test]
    fn parses_tagged_toml_and_rejects_unknown_keys() {
        let c: AgentConfig = serde_json::from_str(r#"{"kind": "brc", "num_atoms": 101}"#).unwrap();
        assert!(matches!(
            c,
            AgentConfig::Brc(BrcConfig { num_atoms: 101, .. })
        ));
        let e = serde_json::from_str::<AgentConfig>(r#"{"kind": "brc", "num_atom": 101}"#);
        assert!(e.unwrap_err().to_string().contains("num_atom"));
        assert!(serde_json::from_str::<AgentConfig>(r#"{"kind": "ppo"}"#).is_err());
    }
}
