//! Run configs: the shipped files, overrides, round trips and one-line error messages.

use std::path::{Path, PathBuf};

use brc_agents::{AgentConfig, BrcConfig};
use brc_envs::TaskSpec;
use brc_train::config::{load_config, parse_config, ConfigError, RunConfig};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .expect("configs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn load(name: &str, overrides: &[&str]) -> Result<RunConfig, ConfigError> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    load_config(&configs_dir().join(name), &overrides)
}

/// A minimal valid config.
const MINIMAL: &str = "[run]\nname = \"x\"\n\n[agent]\nkind = \"brc\"\n";

fn parse(text: &str, overrides: &[&str]) -> Result<RunConfig, ConfigError> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    parse_config(text, "configs/x.toml", &overrides)
}

/// The error of `text` with `overrides`, checked to be one line naming the origin.
fn error(text: &str, overrides: &[&str]) -> ConfigError {
    let e = parse(text, overrides).expect_err("the config should be rejected");
    let line = e.to_string();
    assert!(!line.contains('\n'), "not one line: {line:?}");
    assert!(line.starts_with(&format!("{}: ", e.origin)), "{line}");
    e
}

/// MINIMAL with `extra` appended.
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let files = shipped();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "brc",
        "shared_dqn",
        "independent_dqn",
        "independent_dqn_matched",
        "smoke",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    for path in &files {
        let c = load_config(path, &[]).unwrap_or_else(|e| panic!("{e}"));
        c.validate().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.starts_with('#'),
            "{} needs a header comment",
            path.display()
        );
        assert_eq!(c.run.name, path.file_stem().unwrap().to_string_lossy());
    }
}

#[test]
fn brc_config_is_the_design_note() {
    let c = load("brc.toml", &[]).unwrap();
    assert_eq!(c.agent, AgentConfig::Brc(BrcConfig::default()));
    assert_eq!(c.tasks, TaskSpec::defaults());
    assert_eq!(c.training, Default::default());
    assert_eq!(c.evaluation, Default::default());
    assert_eq!(c.checkpoints, Default::default());
    let e = c.exploration();
    assert_eq!((e.start, e.end, e.decay), (1.0, 0.01, 0.995));
    assert_eq!(c.task_names(), ["standard", "windy", "heavy"]);
}

#[test]
fn independent_configs_carry_the_predecessors_per_task_values() {
    for (file, episodes) in [
        ("independent_dqn.toml", 1500),
        ("independent_dqn_matched.toml", 500),
    ] {
        let c = load(file, &[]).unwrap();
        assert_eq!(c.training.episodes_per_task, episodes);
        let AgentConfig::IndependentDqn(a) = &c.agent else {
            panic!("{file}: not independent_dqn")
        };
        for task in ["windy", "heavy"] {
            let o = &a.per_task[task];
            assert_eq!(o.lr, Some(2.5e-4));
            assert_eq!(o.epsilon_decay, Some(0.992));
            assert_eq!(o.target_update_episodes, Some(20));
            assert_eq!(o.min_replay, Some(2000));
        }
        assert_eq!(a.per_task["standard"].min_replay, Some(1000));
    }
    let c = load("shared_dqn.toml", &[]).unwrap();
    let AgentConfig::SharedDqn(a) = &c.agent else {
        panic!()
    };
    assert_eq!((a.lr, a.grad_clip, a.task_blind), (5e-4, 0.0, false));
}

#[test]
fn smoke_config_is_tiny() {
    let c = load("smoke.toml", &[]).unwrap();
    let AgentConfig::Brc(a) = &c.agent else {
        panic!()
    };
    assert_eq!(
        (a.hidden_dim, a.num_blocks, a.embedding_dim, a.num_atoms),
        (32, 1, 4, 11)
    );
    assert_eq!(c.training.episodes_per_task, 2);
    assert!(c.tasks.iter().all(|t| t.max_episode_steps == 60));
    assert_eq!(c.task_names(), ["standard", "windy", "heavy"]);
}

#[test]
fn resolved_toml_round_trips() {
    for path in shipped() {
        let c = load_config(&path, &[]).unwrap();
        let text = c.to_toml_string();
        let back = parse_config(&text, "resolved", &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, c, "{}", path.display());
    }
    // Defaults made explicit, odd floats and a user-defined task survive too.
    let c = parse(
        &with(
            "[training]\ngamma = 0.987654321\n[[tasks]]\nname = \"windy_strong\"\n\
             gravity = -9.81\nwind_power = 30.0\nmax_episode_steps = 7\nwind_airborne_only = true",
        ),
        &["run.seed=123456789", "agent.lr=1.2345e-5"],
    )
    .unwrap();
    let back = parse_config(&c.to_toml_string(), "resolved", &[]).unwrap();
    assert_eq!(back, c);
}

#[test]
fn defaults_fill_missing_sections() {
    let c = parse(MINIMAL, &[]).unwrap();
    assert_eq!(c.run.seed, 0);
    assert_eq!(c.run.output_dir, PathBuf::from("results"));
    assert_eq!(c.run.device, "cpu");
    assert_eq!(c.tasks, TaskSpec::defaults());
    assert_eq!(c.training.episodes_per_task, 500);
    assert_eq!(c.evaluation.seed, 1_000_000);
    assert_eq!(c.evaluation.gradient_conflict_interval, 10);
    assert_eq!(c.checkpoints.interval_episodes, 100);
    assert!(c.checkpoints.save_replay);
}

#[test]
fn overrides_set_numbers_strings_and_nested_keys() {
    let c = load(
        "brc.toml",
        &[
            "training.episodes_per_task=3",
            "agent.num_atoms=101",
            "run.name=foo",
            "run.output_dir=\"/tmp/out dir\"",
            "run.device = auto",
            "training.gamma=0.9",
            "checkpoints.save_replay=false",
            "tasks[1].wind_power=30",
        ],
    )
    .unwrap();
    assert_eq!(c.training.episodes_per_task, 3);
    assert!(matches!(
        c.agent,
        AgentConfig::Brc(BrcConfig { num_atoms: 101, .. })
    ));
    assert_eq!(c.run.name, "foo");
    assert_eq!(c.run.output_dir, PathBuf::from("/tmp/out dir"));
    assert_eq!(c.run.device, "auto");
    assert_eq!(c.training.gamma, 0.9);
    assert!(!c.checkpoints.save_replay);
    assert_eq!(c.tasks[1].wind_power, 30.0);

    // A key whose tables do not exist yet creates them.
    let c = parse(
        "[run]\nname = \"x\"\n[agent]\nkind = \"independent_dqn\"\n",
        &["agent.per_task.windy.lr=1e-3", "evaluation.episodes=2"],
    )
    .unwrap();
    let AgentConfig::IndependentDqn(a) = &c.agent else {
        panic!()
    };
    assert_eq!(a.per_task["windy"].lr, Some(1e-3));
    assert_eq!(c.evaluation.episodes, 2);

    // A whole section from scratch, the agent kind itself, and the default tasks.
    let c = parse(
        "[run]\nname = \"x\"\n",
        &[
            "agent.kind=shared_dqn",
            "agent.task_blind=true",
            "tasks[2].max_episode_steps=5",
        ],
    )
    .unwrap();
    assert!(matches!(c.agent, AgentConfig::SharedDqn(ref s) if s.task_blind));
    assert_eq!(c.tasks[2].max_episode_steps, 5);
    assert_eq!(c.tasks[0], TaskSpec::standard());

    // Later overrides win.
    let c = parse(MINIMAL, &["run.seed=1", "run.seed=2"]).unwrap();
    assert_eq!(c.run.seed, 2);
}

#[test]
fn unknown_keys_name_their_full_path() {
    let e = error(&with("[training]\nbatch_sise = 3"), &[]);
    assert_eq!(e.origin, "configs/x.toml");
    assert_eq!(e.key.as_deref(), Some("training.batch_sise"));
    assert!(
        e.to_string()
            .starts_with("configs/x.toml: training.batch_sise: unknown key"),
        "{e}"
    );
    assert!(
        e.message.contains("batch_size"),
        "lists the valid keys: {e}"
    );

    let e = error(&with("[trainig]\nbatch_size = 3"), &[]);
    assert!(
        e.to_string()
            .starts_with("configs/x.toml: trainig: unknown key"),
        "{e}"
    );

    let e = error(&with("[run]"), &[]);
    assert!(e.to_string().contains("TOML syntax error"), "{e}");

    let e = error(
        "[run]\nname = \"x\"\nnmae = \"y\"\n[agent]\nkind = \"brc\"\n",
        &[],
    );
    assert_eq!(e.key.as_deref(), Some("run.nmae"));

    // Inside the tagged agent section and its per-task tables.
    let e = error(&with("num_atom = 101"), &[]);
    assert!(
        e.to_string()
            .starts_with("configs/x.toml: agent.num_atom: unknown key"),
        "{e}"
    );
    let e = error(
        "[run]\nname = \"x\"\n[agent]\nkind = \"independent_dqn\"\n\
         [agent.per_task.windy]\nlearning_rate = 1e-3\n",
        &[],
    );
    assert_eq!(
        e.key.as_deref(),
        Some("agent.per_task.windy.learning_rate"),
        "{e}"
    );

    let e = error(
        &with("[[tasks]]\nname = \"a\"\ngravity = -10.0\nmax_episode_steps = 5\nwind = 1.0"),
        &[],
    );
    assert_eq!(e.key.as_deref(), Some("tasks[0].wind"), "{e}");
}

#[test]
fn wrong_types_and_missing_keys() {
    let e = error(&with("[training]\ngamma = \"high\""), &[]);
    assert_eq!(e.key.as_deref(), Some("training.gamma"));
    assert!(e.message.contains("wrong type"), "{e}");
    assert!(e.message.contains("f64"), "{e}");

    let e = error(&with("lr = \"fast\""), &[]);
    assert_eq!(e.key.as_deref(), Some("agent.lr"), "{e}");
    assert!(e.message.contains("wrong type"), "{e}");

    let e = error(&with("[training]\nbatch_size = -4"), &[]);
    assert_eq!(e.key.as_deref(), Some("training.batch_size"), "{e}");

    let e = error("[agent]\nkind = \"brc\"\n", &[]);
    assert_eq!(e.key.as_deref(), Some("run"), "{e}");
    let e = error("[run]\nseed = 1\n[agent]\nkind = \"brc\"\n", &[]);
    assert_eq!(
        e.to_string(),
        "configs/x.toml: run.name: required key is missing"
    );
    let e = error("[run]\nname = \"x\"\n", &[]);
    assert_eq!(e.key.as_deref(), Some("agent"), "{e}");
    assert!(e.message.contains("missing"), "{e}");
    let e = error("[run]\nname = \"x\"\n[agent]\nlr = 1.0\n", &[]);
    assert_eq!(e.key.as_deref(), Some("agent.kind"), "{e}");
}

#[test]
fn n_step_beyond_a_tasks_time_limit_is_an_error() {
    // The smoke tasks stop after 60 steps: a 61-step return would never be stored.
    assert_eq!(
        load("smoke.toml", &["training.n_step=60"])
            .unwrap()
            .training
            .n_step,
        60
    );
    let e = load("smoke.toml", &["training.n_step=61"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("training.n_step = 61: must be ≤ the shortest time limit (task ")
            && e.contains("max_episode_steps = 60)"),
        "{e}"
    );
}

#[test]
fn bad_agent_kind() {
    let e = error("[run]\nname = \"x\"\n[agent]\nkind = \"ppo\"\n", &[]);
    assert_eq!(e.key.as_deref(), Some("agent.kind"));
    let line = e.to_string();
    assert!(
        line.starts_with("configs/x.toml: agent.kind = \"ppo\": unknown agent kind"),
        "{line}"
    );
    assert!(line.contains("independent_dqn, shared_dqn, brc"), "{line}");
    // Keys of another kind are unknown to this one.
    let e = error(
        "[run]\nname = \"x\"\n[agent]\nkind = \"shared_dqn\"\nnum_atoms = 5\n",
        &[],
    );
    assert_eq!(e.key.as_deref(), Some("agent.num_atoms"), "{e}");
}

#[test]
fn out_of_range_values_name_key_and_value() {
    let cases: &[(&str, &str)] = &[
        ("[training]\nepisodes_per_task = 0", "configs/x.toml: training.episodes_per_task = 0: must be ≥ 1"),
        ("[training]\nbatch_size = 0", "configs/x.toml: training.batch_size = 0: must be ≥ 1"),
        ("[training]\ngamma = 0.0", "configs/x.toml: training.gamma = 0: must be in (0, 1]"),
        ("[training]\ngamma = 1.5", "configs/x.toml: training.gamma = 1.5: must be in (0, 1]"),
        ("[training]\nepsilon_decay = 1.01", "configs/x.toml: training.epsilon_decay = 1.01: must be in (0, 1]"),
        ("[training]\nepsilon_start = 0.5\nepsilon_end = 0.6", "configs/x.toml: training.epsilon_end = 0.6: must be in [0, training.epsilon_start (0.5)]"),
        ("[training]\nepsilon_start = 1.5", "configs/x.toml: training.epsilon_start = 1.5: must be in [0, 1]"),
        ("[training]\nbatch_size = 64\nbuffer_capacity = 32\nmin_replay = 32", "configs/x.toml: training.batch_size = 64: must be ≤ training.buffer_capacity (32)"),
        ("[training]\nmin_replay = 200000", "configs/x.toml: training.min_replay = 200000: must be ≤ training.buffer_capacity (100000)"),
        ("[training]\nmin_replay = 10", "configs/x.toml: training.min_replay = 10: must be ≥ training.batch_size (64)"),
        ("[training]\nupdates_per_step = 0", "configs/x.toml: training.updates_per_step = 0: must be ≥ 1"),
        ("[training]\nn_step = 0", "configs/x.toml: training.n_step = 0: must be ≥ 1"),
        ("[training]\nn_step = 101", "configs/x.toml: training.n_step = 101: must be ≤ 100"),
        ("[training]\ntarget_update_episodes = 0", "configs/x.toml: training.target_update_episodes = 0: must be ≥ 1"),
        ("[evaluation]\ninterval_episodes = 0", "configs/x.toml: evaluation.interval_episodes = 0: must be ≥ 1"),
        ("[evaluation]\nepisodes = 0", "configs/x.toml: evaluation.episodes = 0: must be ≥ 1"),
        ("[evaluation]\nfinal_episodes = 0", "configs/x.toml: evaluation.final_episodes = 0: must be ≥ 1"),
        ("[checkpoints]\ninterval_episodes = 0", "configs/x.toml: checkpoints.interval_episodes = 0: must be ≥ 1"),
        ("num_atoms = 1", "configs/x.toml: agent.num_atoms = 1: must be ≥ 2"),
        ("lr = -1.0", "configs/x.toml: agent.lr = -1: must be a finite number > 0"),
    ];
    for (extra, expected) in cases {
        assert_eq!(error(&with(extra), &[]).to_string(), *expected, "{extra}");
    }
    let e = error(&with("[evaluation]\nseed = 1099511627770"), &[]);
    assert_eq!(e.key.as_deref(), Some("evaluation.seed"), "{e}");
    assert!(e.message.contains("training seeds"), "{e}");
    // gradient_conflict_interval = 0 disables the measurement: valid.
    parse(&with("[evaluation]\ngradient_conflict_interval = 0"), &[]).unwrap();
}

#[test]
fn run_section_checks() {
    for device in ["cpu", "auto", "cuda", "cuda:1", "metal", "metal:0"] {
        parse(MINIMAL, &[&format!("run.device={device}")]).unwrap();
    }
    for device in ["gpu", "cuda:", "cuda:x", "cpu:0", ""] {
        let e = parse(MINIMAL, &[&format!("run.device={device}")]).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("run.device"), "{device}: {e}");
    }
    let e = error("[run]\nname = \"a/b\"\n[agent]\nkind = \"brc\"\n", &[]);
    assert_eq!(
        e.to_string(),
        "configs/x.toml: run.name = \"a/b\": must be non-empty, without '/' or '\\'"
    );
    let e = error("[run]\nname = \"\"\n[agent]\nkind = \"brc\"\n", &[]);
    assert_eq!(e.key.as_deref(), Some("run.name"));
}

#[test]
fn task_errors_name_the_task() {
    let task = |name: &str, gravity: f64| {
        format!("[[tasks]]\nname = \"{name}\"\ngravity = {gravity:?}\nmax_episode_steps = 10\n")
    };
    let e = error(
        &with(&format!("{}{}", task("a", -10.0), task("a", -5.0))),
        &[],
    );
    assert_eq!(
        e.to_string(),
        "configs/x.toml: tasks[1].name = \"a\": duplicate task name (also tasks[0].name)"
    );
    let e = error(
        &with(&format!("{}{}", task("a", -10.0), task("b", 1.0))),
        &[],
    );
    assert_eq!(
        e.to_string(),
        "configs/x.toml: tasks[1].gravity = 1: must be negative and ≥ −100"
    );
    let e = error(&with(&task(" ", -10.0)), &[]);
    assert_eq!(
        e.to_string(),
        "configs/x.toml: tasks[0].name: must not be empty"
    );
    let e = error(&format!("tasks = []\n{MINIMAL}"), &[]);
    assert!(e.to_string().starts_with("configs/x.toml: tasks"), "{e}");
    assert!(e.message.contains("at least one task"), "{e}");
}

#[test]
fn unknown_per_task_task_name() {
    let e = error(
        "[run]\nname = \"x\"\n[agent]\nkind = \"independent_dqn\"\n[agent.per_task.moon]\nlr = 1e-3\n",
        &[],
    );
    assert_eq!(e.key.as_deref(), Some("agent.per_task.moon"));
    let line = e.to_string();
    assert!(
        line.starts_with("configs/x.toml: agent.per_task.moon"),
        "{line}"
    );
    assert!(
        line.contains("unknown task (the run's tasks: standard, windy, heavy)"),
        "{line}"
    );
    let e = error(
        "[run]\nname = \"x\"\n[agent]\nkind = \"independent_dqn\"\n[agent.per_task.windy]\nepsilon_decay = 2.0\n",
        &[],
    );
    assert_eq!(
        e.to_string(),
        "configs/x.toml: agent.per_task.windy.epsilon_decay = 2: must be in (0, 1]"
    );
}

#[test]
fn syntax_errors_are_one_line_with_a_line_number() {
    let e = error("[run]\nname = \"x\"\nseed = = 3\n", &[]);
    let line = e.to_string();
    assert!(
        line.starts_with("configs/x.toml: TOML syntax error at line 3"),
        "{line}"
    );
    assert_eq!(e.key, None);
    let e = error("[run]\nname = \"x\n", &[]);
    assert!(e.to_string().contains("at line 2"), "{e}");
}

#[test]
fn missing_file() {
    let e = load_config(Path::new("configs/does_not_exist.toml"), &[]).unwrap_err();
    let line = e.to_string();
    assert!(
        line.starts_with("configs/does_not_exist.toml: cannot read: "),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

#[test]
fn bad_overrides_name_the_override() {
    let e = error(MINIMAL, &["training.episodes_per_task"]);
    assert_eq!(e.origin, "--set training.episodes_per_task");
    assert!(e.message.contains("KEY=VALUE"), "{e}");

    let e = error(MINIMAL, &["training.gamma=abc"]);
    assert_eq!(e.origin, "--set training.gamma=abc");
    assert_eq!(e.key.as_deref(), Some("training.gamma"));
    assert!(
        e.to_string()
            .starts_with("--set training.gamma=abc: training.gamma: wrong type"),
        "{e}"
    );

    let e = error(MINIMAL, &["training.batch_sise=3"]);
    assert!(
        e.to_string()
            .starts_with("--set training.batch_sise=3: training.batch_sise: unknown key"),
        "{e}"
    );

    let e = error(MINIMAL, &["agent.num_atoms=1"]);
    assert_eq!(
        e.to_string(),
        "--set agent.num_atoms=1: agent.num_atoms = 1: must be ≥ 2"
    );

    let e = error(MINIMAL, &["agent.kind=ppo"]);
    assert_eq!(e.origin, "--set agent.kind=ppo");

    for bad in ["=3", "training..gamma=1", "training.gamma[x]=1", "a b=1"] {
        let e = error(MINIMAL, &[bad]);
        assert_eq!(e.origin, format!("--set {bad}"));
        assert!(e.message.contains("bad key"), "{e}");
    }
    let e = error(MINIMAL, &["run.name.first=x"]);
    assert!(e.message.contains("not a table"), "{e}");
    let e = error(MINIMAL, &["tasks[7].gravity=-3"]);
    assert!(e.message.contains("no index 7"), "{e}");

    // Errors elsewhere still blame the file.
    let e = error(
        &with("[training]\ngamma = 2.0"),
        &["training.batch_size=32"],
    );
    assert_eq!(e.origin, "configs/x.toml");
}

#[test]
fn gradient_methods_and_sampling_are_checked_together() {
    let cases: &[(&str, &str)] = &[
        ("gradient = \"pcgrad\"", "configs/x.toml: agent.gradient = \"pcgrad\": needs training.sampling = \"balanced\" (every task's loss in every update)"),
        ("cagrad_c = -0.5", "configs/x.toml: agent.cagrad_c = -0.5: must be a finite number ≥ 0"),
        ("gradnorm_lr = 0.0", "configs/x.toml: agent.gradnorm_lr = 0: must be a finite number > 0"),
    ];
    for (extra, expected) in cases {
        assert_eq!(error(&with(extra), &[]).to_string(), *expected, "{extra}");
    }
    let e = error(&with("gradient = \"pcgard\""), &[]).to_string();
    assert!(e.contains("agent.gradient") && e.contains("pcgard"), "{e}");
    let e = error(&with("[training]\nsampling = \"uniform\""), &[]).to_string();
    assert!(
        e.contains("training.sampling") && e.contains("balanced"),
        "{e}"
    );
    let independent = "[run]\nname = \"x\"\n\n[agent]\nkind = \"independent_dqn\"\n\n[training]\nsampling = \"balanced\"\n";
    let e = error(independent, &[]);
    assert_eq!(e.key.as_deref(), Some("training.sampling"), "{e}");
    let c = parse(
        &with("gradient = \"gradnorm\"\n[training]\nsampling = \"balanced\""),
        &[],
    )
    .unwrap();
    assert_eq!(c.training.sampling, brc_train::Sampling::Balanced);
    assert_eq!(c.agent.gradient(), brc_agents::GradientMethod::Gradnorm);
}

#[test]
fn varshare_values_are_checked_with_their_full_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[agent.varshare]\nbeta = -0.5",
            "configs/x.toml: agent.varshare.beta = -0.5: must be a finite number ≥ 0",
        ),
        (
            "[agent.varshare]\nsigma_prior = 0.0",
            "configs/x.toml: agent.varshare.sigma_prior = 0: must be a finite number > 0",
        ),
        (
            "[agent.varshare]\nsigma_init = -0.001",
            "configs/x.toml: agent.varshare.sigma_init = -0.001: must be a finite number > 0",
        ),
        (
            "[agent.varshare]\nprune_threshold = -1.0",
            "configs/x.toml: agent.varshare.prune_threshold = -1: must be a finite number ≥ 0",
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(error(&with(extra), &[]).to_string(), *expected, "{extra}");
    }
    let e = error(&with("[agent.varshare]\nmode = \"bayes\""), &[]).to_string();
    assert!(
        e.contains("agent.varshare.mode") && e.contains("bayes"),
        "{e}"
    );
    let e = error(&with("[agent.varshare]\nbetta = 0.1"), &[]).to_string();
    assert!(
        e.starts_with("configs/x.toml: agent.varshare.betta: unknown key"),
        "{e}"
    );
    let e = error(
        &with("gradient = \"pcgrad\"\n[agent.varshare]\n[training]\nsampling = \"balanced\""),
        &[],
    );
    assert_eq!(e.key.as_deref(), Some("agent.gradient"), "{e}");
    // --set reaches into the table, and the shipped configs set it.
    let c = parse(MINIMAL, &["agent.varshare.beta=0.2"]).unwrap();
    assert_eq!(c.agent.varshare().unwrap().beta, 0.2);
    let c = load("varshare.toml", &[]).unwrap();
    assert_eq!(c.agent.varshare().unwrap().sigma_prior, 0.05);
    assert!(load("brc_tuned.toml", &[])
        .unwrap()
        .agent
        .varshare()
        .is_none());
}
