//! Gymnasium's heuristic pilot for LunarLander, a reusable scripted policy.

use crate::Observation;

/// Gymnasium's `heuristic(env, s)` for discrete actions.
///
/// numpy evaluates it in float32 (the observation's dtype wins over Python floats under
/// numpy 2's promotion rules), so it is computed in `f32` here too: near a threshold the
/// chosen action would otherwise differ from Gymnasium's.
pub fn heuristic_action(s: &Observation) -> usize {
    // Angle should point towards the centre; more than 0.4 rad (22°) is bad.
    let angle_targ = (s[0] * 0.5 + s[2] * 1.0).clamp(-0.4, 0.4);
    // Target height proportional to the horizontal offset.
    let hover_targ = 0.55 * s[0].abs();
    let mut angle_todo = (angle_targ - s[4]) * 0.5 - s[5] * 1.0;
    let mut hover_todo = (hover_targ - s[1]) * 0.5 - s[3] * 0.5;
    if s[6] != 0.0 || s[7] != 0.0 {
        // After touchdown only the fall speed matters.
        angle_todo = 0.0;
        hover_todo = -s[3] * 0.5;
    }
    if hover_todo > angle_todo.abs() && hover_todo > 0.05 {
        2
    } else if angle_todo < -0.05 {
        3
    } else if angle_todo > 0.05 {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_main_engine_when_falling_fast() {
        let s = [0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0];
        // hover_todo = (0 - 1)·0.5 + 0.5 = 0 → not > 0.05; falling faster flips it.
        assert_eq!(heuristic_action(&s), 0);
        let s = [0.0, 0.5, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(heuristic_action(&s), 2);
    }

    #[test]
    fn turns_towards_the_pad() {
        // Tilted left (positive angle) while centred: angle_todo < 0 → right engine.
        let s = [0.0, 1.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0];
        assert_eq!(heuristic_action(&s), 3);
        let s = [0.0, 1.0, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0];
        assert_eq!(heuristic_action(&s), 1);
    }

    #[test]
    fn after_contact_only_damps_the_fall() {
        let s = [0.0, 0.0, 0.0, -0.2, 0.5, 0.0, 1.0, 0.0];
        assert_eq!(heuristic_action(&s), 2);
        let s = [0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 1.0, 1.0];
        assert_eq!(heuristic_action(&s), 0);
    }
}
