//! One colour per method across every report: a method's palette index comes from its name,
//! not from where it stands on a `brc compare` command line, so `compare/`, `surgery/` and
//! `ablations/` draw `pcgrad` in the same colour.

use crate::methods::Method;

/// The methods with a fixed colour, in palette order (the first ones get Okabe–Ito's
/// colour-blind-safe colours). The earlier project's rows (`<name> (predecessor)`) take their
/// method's colour and are told apart by their style (dashed, hatched, hollow).
pub const METHOD_ORDER: [&str; 20] = [
    "shared_dqn",
    "independent_dqn",
    // VarShare's l2 ablation is drawn beside varshare_mlp (ochre) and the tuned BRC (violet):
    // Okabe–Ito's bluish green keeps it apart from both.
    "varshare_mlp_l2",
    "brc",
    "brc_polyak",
    // The one-critic step of the tuning (changes 1–3, the control of the surgery and VarShare
    // runs built on it) took this place from the ±10-support step when it left `compare/`;
    // that step, drawn only in `ablations/` now, takes a free colour there.
    "brc_t_critics1",
    "brc_tuned",
    "shared_dqn_blind",
    "shared_dqn_balanced",
    "pcgrad",
    "pcgrad_blind",
    "gradnorm",
    "gradnorm_blind",
    "cagrad",
    "brc_balanced",
    "brc_pcgrad",
    "brc_cagrad",
    "varshare",
    "varshare_mlp",
    // The last entry (purple) sits near the tuned BRC's violet: a control that is drawn in a
    // different curve figure from it.
    "independent_dqn_matched",
];

/// The palette index of each method in a report: its [`METHOD_ORDER`] place, or, for methods
/// not listed (ablation variants, new configs) and for a listed one whose place another of
/// the report's methods took, the lowest index no other method of the report uses.
pub fn method_colors(methods: &[Method], palette_len: usize) -> Vec<usize> {
    let known = |m: &Method| {
        let base = m.name.strip_suffix(" (predecessor)").unwrap_or(&m.name);
        METHOD_ORDER.iter().position(|n| *n == base)
    };
    let mut colors: Vec<Option<usize>> = vec![None; methods.len()];
    let mut used = vec![false; palette_len.max(METHOD_ORDER.len())];
    // Our own listed methods first, then the predecessor's rows (which may share a colour).
    for predecessor in [false, true] {
        for (i, m) in methods.iter().enumerate() {
            if m.predecessor != predecessor {
                continue;
            }
            if let Some(k) = known(m) {
                if predecessor || !used[k] {
                    colors[i] = Some(k);
                    used[k] = true;
                }
            }
        }
    }
    colors
        .into_iter()
        .map(|c| {
            c.unwrap_or_else(|| {
                let k = used.iter().position(|u| !u).unwrap_or(0);
                if k < used.len() {
                    used[k] = true;
                }
                k
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(name: &str, predecessor: bool) -> Method {
        Method {
            name: name.into(),
            runs: Vec::new(),
            predecessor,
        }
    }

    #[test]
    fn a_method_keeps_its_color_whatever_else_is_compared() {
        let surgery = [method("cagrad", false), method("pcgrad", false)];
        let main = [
            method("pcgrad", false),
            method("shared_dqn", false),
            method("cagrad", false),
        ];
        let (a, b) = (method_colors(&surgery, 20), method_colors(&main, 20));
        assert_eq!((a[0], a[1]), (b[2], b[0]));
        assert_eq!(b[1], 0);
    }

    #[test]
    fn predecessor_rows_share_their_method_color_and_unknown_methods_take_free_ones() {
        let methods = [
            method("shared_dqn (predecessor)", true),
            method("brc_t_scalar", false),
            method("shared_dqn", false),
            method("brc_t_postln", false),
        ];
        let c = method_colors(&methods, 20);
        assert_eq!(c[0], c[2]);
        assert_eq!(c[2], 0);
        // The unknown ones: the lowest free indices, distinct from each other and from 0.
        assert_eq!((c[1], c[3]), (1, 2));
    }
}
