//! Search spaces: SPACE.json parsing and validation, unit-cube maps, and the claim that the
//! stick-breaking simplex map pushes the uniform distribution forward to the uniform
//! (flat Dirichlet) one while BOMF's normalisation does not.

use bomf_bo::sampling::sobol_design;
use bomf_bo::{BoError, Domain, Goal, Param, SimplexMap, Space, SpaceConfig};
use proptest::prelude::*;

const ISSUE_SPACE: &str = r#"{
  "params": [{"name": "lr", "low": 1e-6, "high": 1e-4, "log": true},
             {"name": "bs", "low": 4, "high": 32, "integer": true}],
  "objectives": [{"name": "acc", "goal": "max"}, {"name": "loss", "goal": "min"}],
  "ref_point": [0.5, 2.0],
  "domain": "box"
}"#;

fn error_text(json: &str) -> String {
    match SpaceConfig::from_json(json) {
        Ok(_) => panic!("expected an error for {json}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_issue_example_parses() {
    let c = SpaceConfig::from_json(ISSUE_SPACE).unwrap();
    assert_eq!(c.params.len(), 2);
    assert!(c.params[0].log && !c.params[0].integer);
    assert!(c.params[1].integer);
    assert_eq!(c.objectives[1].goal, Goal::Min);
    assert_eq!(c.ref_point, Some(vec![0.5, 2.0]));
    let s = c.space().unwrap();
    assert_eq!(s.domain(), Domain::Box);
    assert_eq!(s.unit_dim(), 2);
    // Serialising and parsing again gives the same configuration.
    let again = SpaceConfig::from_json(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn defaults_domain_box_and_optional_fields() {
    let c = SpaceConfig::from_json(
        r#"{"params": [{"name": "x", "low": 0, "high": 1}], "objectives": [{"name": "f", "goal": "min"}]}"#,
    )
    .unwrap();
    assert_eq!(c.space().unwrap().domain(), Domain::Box);
    assert_eq!(c.ref_point, None);
}

#[test]
fn validation_errors_name_the_field() {
    let cases = [
        (
            r#"{"params": [{"name": "lr", "low": 1, "high": 1}], "objectives": [{"name": "f", "goal": "max"}]}"#,
            "params[0] ('lr'): low (1) must be less than high (1)",
        ),
        (
            r#"{"params": [{"name": "x", "low": -1e308, "high": 1e308}], "objectives": [{"name": "f", "goal": "max"}]}"#,
            "params[0] ('x'): the range [-1e308, 1e308] is too wide",
        ),
        (
            r#"{"params": [{"name": "lr", "low": 0, "high": 1, "log": true}], "objectives": [{"name": "f", "goal": "max"}]}"#,
            "params[0] ('lr'): a log-scale parameter needs low > 0",
        ),
        (
            r#"{"params": [{"name": "x", "low": 0, "high": 1}], "objectives": [{"name": "f", "goal": "maximize"}]}"#,
            "unknown variant `maximize`, expected `max` or `min`",
        ),
        (
            r#"{"params": [], "objectives": [{"name": "f", "goal": "max"}]}"#,
            "params: at least one parameter is required",
        ),
        (
            r#"{"params": [{"name": "x", "low": 0, "high": 1}], "objectives": []}"#,
            "objectives: at least one objective is required",
        ),
        (
            r#"{"params": [{"name": "x", "low": 0, "high": 1}], "objectives": [{"name": "f", "goal": "max"}], "ref_point": [0, 1]}"#,
            "ref_point vs objectives: expected 1, got 2",
        ),
        (
            r#"{"params": [{"name": "x", "low": 0, "high": 1}, {"name": "x", "low": 0, "high": 2}], "objectives": [{"name": "f", "goal": "max"}]}"#,
            "the name 'x' appears more than once",
        ),
        (
            r#"{"params": [{"name": "bs", "low": 4.5, "high": 32, "integer": true}], "objectives": [{"name": "f", "goal": "max"}]}"#,
            "params[0] ('bs'): an integer parameter needs integer bounds",
        ),
        (
            r#"{"params": [{"name": "x", "lo": 0, "high": 1}], "objectives": [{"name": "f", "goal": "max"}]}"#,
            "unknown field `lo`",
        ),
        (
            r#"{"params": [{"name": "w1", "low": 0, "high": 1}, {"name": "w2", "low": 0, "high": 2}], "objectives": [{"name": "f", "goal": "max"}], "domain": "simplex"}"#,
            "params[1] ('w2'): simplex weights must have low = 0, high = 1",
        ),
        (
            r#"{"params": [{"name": "w1", "low": 0, "high": 1}], "objectives": [{"name": "f", "goal": "max"}], "domain": "simplex"}"#,
            "a simplex needs at least 2 weights",
        ),
        (
            r#"{"params": [{"name": "x", "low": 0, "high": 1}], "objectives": [{"name": "f", "goal": "max"}], "domain": "sphere"}"#,
            "unknown variant `sphere`",
        ),
        (
            "{\"params\": [\n{\"name\": \"x\", \"low\": 0, \"high\": }]}",
            "line 2",
        ),
    ];
    for (json, expected) in cases {
        let text = error_text(json);
        assert!(text.contains(expected), "error `{text}` lacks `{expected}`");
    }
}

#[test]
fn points_outside_the_space_are_rejected_by_name() {
    let s = SpaceConfig::from_json(ISSUE_SPACE)
        .unwrap()
        .space()
        .unwrap();
    let e = s.to_unit(&[1e-3, 8.0]).unwrap_err().to_string();
    assert!(e.contains("coordinate 0 ('lr') = 0.001 is outside"), "{e}");
    let e = s.to_unit(&[1e-5, 8.5]).unwrap_err().to_string();
    assert!(e.contains("('bs') = 8.5 must be an integer"), "{e}");
    assert!(matches!(
        s.to_unit(&[1e-5]),
        Err(BoError::DimensionMismatch { .. })
    ));
    let simplex = Space::simplex(vec!["a".into(), "b".into()], SimplexMap::Normalize).unwrap();
    assert!(simplex.to_unit(&[0.5, 0.6]).is_err());
}

#[test]
fn integer_parameters_round_to_the_nearest_integer_in_range() {
    let s = Space::new_box(vec![
        Param::new("bs", 4.0, 32.0).integer(),
        Param::new("layers", 1.0, 4.0).integer().log_scale(),
    ])
    .unwrap();
    // u = 0.5 → 18 (linear), and 2 (√4 = 2 on the log scale).
    assert_eq!(s.from_unit(&[0.5, 0.5]).unwrap(), vec![18.0, 2.0]);
    // Every unit point maps to integers inside the bounds.
    let design = sobol_design(256, 2, 3).unwrap();
    for u in design.chunks(2) {
        let v = s.from_unit(u).unwrap();
        assert!(v.iter().all(|t| t.fract() == 0.0));
        assert!((4.0..=32.0).contains(&v[0]) && (1.0..=4.0).contains(&v[1]));
        // Rounded points are fixed points of the canonical map.
        let c = s.canonical_unit(u).unwrap();
        assert_eq!(s.canonical_unit(&c).unwrap(), c);
    }
}

/// Mean and variance of each weight over a Sobol design pushed through `space`.
fn weight_moments(space: &Space, n: usize) -> (Vec<f64>, Vec<f64>) {
    let d = space.unit_dim();
    let k = space.dim();
    let design = sobol_design(n, d, 5).unwrap();
    let mut mean = vec![0.0; k];
    let mut second = vec![0.0; k];
    for u in design.chunks(d) {
        let w = space.from_unit(u).unwrap();
        for i in 0..k {
            mean[i] += w[i] / n as f64;
            second[i] += w[i] * w[i] / n as f64;
        }
    }
    let var = (0..k).map(|i| second[i] - mean[i] * mean[i]).collect();
    (mean, var)
}

#[test]
fn stick_breaking_pushes_uniform_forward_to_flat_dirichlet() {
    for k in [2usize, 3, 5, 10] {
        let names = (0..k).map(|i| format!("w{i}")).collect();
        let s = Space::simplex(names, SimplexMap::StickBreaking).unwrap();
        assert_eq!(s.unit_dim(), k - 1);
        let (mean, var) = weight_moments(&s, 1 << 14);
        // Flat Dirichlet: E[w_i] = 1/k, Var[w_i] = (k−1) / (k²(k+1)).
        let kf = k as f64;
        let dirichlet_var = (kf - 1.0) / (kf * kf * (kf + 1.0));
        for i in 0..k {
            assert!((mean[i] - 1.0 / kf).abs() < 2e-3, "k={k} mean {mean:?}");
            assert!(
                (var[i] / dirichlet_var - 1.0).abs() < 0.02,
                "k={k} var {var:?} vs {dirichlet_var}"
            );
        }
    }
}

#[test]
fn normalisation_map_crowds_weights_towards_the_centre() {
    // BOMF's w = x/Σx with uniform x: the weights vary less than under the flat Dirichlet,
    // i.e. its designs under-explore the corners (the checkpoints themselves).
    let k = 10;
    let names = (0..k).map(|i| format!("w{i}")).collect();
    let s = Space::simplex(names, SimplexMap::Normalize).unwrap();
    let (mean, var) = weight_moments(&s, 1 << 14);
    let kf = k as f64;
    let dirichlet_var = (kf - 1.0) / (kf * kf * (kf + 1.0));
    for i in 0..k {
        assert!((mean[i] - 0.1).abs() < 2e-3);
        assert!(var[i] < 0.5 * dirichlet_var, "{var:?} vs {dirichlet_var}");
    }
}

proptest! {
    #[test]
    fn box_round_trip(u in proptest::collection::vec(0.0f64..=1.0, 3)) {
        let s = Space::new_box(vec![
            Param::new("a", -3.0, 7.0),
            Param::new("lr", 1e-7, 1e-2).log_scale(),
            Param::new("m", 0.5, 0.999),
        ]).unwrap();
        let user = s.from_unit(&u).unwrap();
        s.check_point(&user).unwrap();
        let back = s.to_unit(&user).unwrap();
        for (a, b) in u.iter().zip(&back) {
            prop_assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn normalize_simplex_round_trip(w in proptest::collection::vec(0.01f64..1.0, 2..8)) {
        let sum: f64 = w.iter().sum();
        let w: Vec<f64> = w.iter().map(|v| v / sum).collect();
        let s = Space::simplex((0..w.len()).map(|i| format!("w{i}")).collect(), SimplexMap::Normalize).unwrap();
        let back = s.from_unit(&s.to_unit(&w).unwrap()).unwrap();
        for (a, b) in w.iter().zip(&back) {
            prop_assert!((a - b).abs() < 1e-12);
        }
    }
}
