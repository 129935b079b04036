//! The port against episodes recorded from Gymnasium 1.4.0 (fixtures copied from
//! `../shared/refdata`): identical random draws, close open-loop trajectories until the first
//! ground contact, and the same heuristic statistics over 100 seeds.

use std::path::PathBuf;

use brc_envs::fidelity::{
    check_episode, load_heuristic_records, load_ref_file, same_outcome, MEAN_RETURN_TOL,
    MIN_OUTCOME_AGREEMENT, PRE_CONTACT_OBS_TOL, PRE_CONTACT_REWARD_TOL, RESET_OBS_TOL,
};
use brc_envs::{heuristic_action, run_episode, LunarLander, TaskSpec};

const TASKS: [&str; 3] = ["standard", "windy", "heavy"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn checks(task: &str) -> Vec<brc_envs::fidelity::EpisodeCheck> {
    let file = load_ref_file(&fixture(&format!("refdata_{task}.json.gz"))).unwrap();
    assert_eq!(file.variant, task);
    assert_eq!(file.episodes.len(), 20);
    let spec = TaskSpec::by_name(task).unwrap();
    file.episodes
        .iter()
        .map(|e| check_episode(&spec, e))
        .collect()
}

#[test]
fn draws_and_open_loop_trajectories_match_gymnasium() {
    for task in TASKS {
        for c in checks(task) {
            let id = format!("{task} seed {} {}", c.seed, c.policy);
            assert!(c.draws_equal, "{id}: draw sequence differs");
            assert!(
                c.reset_obs_error <= RESET_OBS_TOL,
                "{id}: reset obs error {}",
                c.reset_obs_error
            );
            assert!(c.pre_contact_steps >= 40, "{id}: too few steps compared");
            assert!(
                c.pre_contact_obs_error <= PRE_CONTACT_OBS_TOL,
                "{id}: obs error {} before contact",
                c.pre_contact_obs_error
            );
            assert!(
                c.pre_contact_reward_error <= PRE_CONTACT_REWARD_TOL,
                "{id}: reward error {} before contact",
                c.pre_contact_reward_error
            );
        }
    }
}

#[test]
fn heuristic_statistics_match_gymnasium_on_100_seeds() {
    let records = load_heuristic_records(&fixture("heuristic100_py.json.gz")).unwrap();
    for task in TASKS {
        let reference = &records[task];
        assert_eq!(reference.len(), 100);
        let spec = TaskSpec::by_name(task).unwrap();
        let mut env = LunarLander::new(spec.clone()).unwrap();
        let mut same = 0;
        let mut sum = 0.0;
        for r in reference {
            let ours =
                run_episode(&mut env, r.seed, spec.max_episode_steps, heuristic_action).unwrap();
            sum += ours.episode_return;
            same += usize::from(same_outcome(ours.outcome, &r.outcome));
        }
        let ours_mean = sum / 100.0;
        let ref_mean = reference.iter().map(|r| r.ret).sum::<f64>() / 100.0;
        eprintln!("{task}: heuristic mean {ours_mean:.2} (Gymnasium {ref_mean:.2}), {same}/100 same outcome");
        assert!(
            (ours_mean - ref_mean).abs() <= MEAN_RETURN_TOL,
            "{task}: heuristic mean {ours_mean:.2} vs Gymnasium {ref_mean:.2}"
        );
        assert!(
            same as f64 >= MIN_OUTCOME_AGREEMENT * 100.0,
            "{task}: only {same}/100 outcomes agree"
        );
    }
}
