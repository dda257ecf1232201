//! Pareto filtering, hypervolume and box decompositions against BoTorch's published test values,
//! fixtures from pymoo/moocore (`tests/fixtures/hv/gen_hv.py`), and brute-force properties.

mod fixtures;

use bomf_bo::partitioning::{
    Cells, dominated_cells, hypervolume, infer_reference_point, is_non_dominated,
    non_dominated_indices, nondominated_cells, nondominated_cells_into, pareto_front,
};
use fixtures::{nums, rows};
use proptest::prelude::*;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

// ---------------------------------------------------------------------------------------------
// BoTorch's own values: test/utils/multi_objective/test_hypervolume.py (TestHypervolume).
// ---------------------------------------------------------------------------------------------

const BOTORCH_FRONT: [f64; 10] = [8.5, 3.0, 8.5, 3.5, 5.0, 5.0, 9.0, 1.0, 4.0, 5.0];

#[test]
fn botorch_hypervolume_2d() {
    assert!(close(
        hypervolume(&BOTORCH_FRONT, 2, &[0.0, 0.0]).unwrap(),
        37.75,
        1e-12
    ));
    assert!(close(
        hypervolume(&BOTORCH_FRONT, 2, &[1.0, 0.5]).unwrap(),
        28.75,
        1e-12
    ));
    // The decomposition-based value agrees.
    let cells = dominated_cells(&BOTORCH_FRONT, 2, &[0.0, 0.0]).unwrap();
    assert!(close(cells.volume(), 37.75, 1e-12));
}

fn minus_unit_vectors(m: usize) -> Vec<f64> {
    let mut ys = vec![0.0; m * m];
    for i in 0..m {
        ys[i * m + i] = -1.0;
    }
    ys
}

#[test]
fn botorch_hypervolume_3d_4d() {
    // (reference point, hypervolume of the m points −e_i)
    let cases: [(&[f64], f64); 2] = [
        (&[-2.1, -2.5, -2.3], 11.075),
        (&[-2.1, -2.5, -2.3, -2.0], 23.15),
    ];
    for (r, want) in cases {
        let m = r.len();
        let ys = minus_unit_vectors(m);
        assert!(
            close(hypervolume(&ys, m, r).unwrap(), want, 1e-12),
            "m = {m}"
        );
        let cells = dominated_cells(&ys, m, r).unwrap();
        assert!(close(cells.volume(), want, 1e-12), "m = {m}");
    }
}

#[test]
fn botorch_front_has_n_plus_one_nondominated_cells() {
    let cells = nondominated_cells(&BOTORCH_FRONT, 2, &[0.0, 0.0]).unwrap();
    // Pareto front {(5,5), (8.5,3.5), (9,1)}: (4,5) and (8.5,3) are dominated → n + 1 = 4 cells.
    assert_eq!(cells.len(), 4);
    let (lo, up) = cells.cell(0);
    assert_eq!((lo, up), (&[0.0, 5.0][..], &[5.0, f64::INFINITY][..]));
}

// ---------------------------------------------------------------------------------------------
// Fixtures: pymoo / moocore hypervolumes and BoTorch-semantics masks on random point sets.
// ---------------------------------------------------------------------------------------------

#[test]
fn fixture_hypervolume_mask_and_decompositions() {
    let doc = fixtures::load("hv/hv_cases.json");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let m = case["m"].as_u64().unwrap() as usize;
        let r = nums(&case["ref"]);
        let ys = rows(&case["points"]).concat();
        let expected = case["hv"].as_f64().unwrap();

        let mask = is_non_dominated(&ys, m, true).unwrap();
        let want: Vec<bool> = case["nd_mask"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        assert_eq!(mask, want, "{name}: non-dominated mask");

        let hv = hypervolume(&ys, m, &r).unwrap();
        assert!(close(hv, expected, 1e-10), "{name}: hv {hv} vs {expected}");
        let dom = dominated_cells(&ys, m, &r).unwrap();
        assert!(
            close(dom.volume(), expected, 1e-10),
            "{name}: dominated cells {} vs {expected}",
            dom.volume()
        );

        let nd = nondominated_cells(&ys, m, &r).unwrap();
        check_tiling(&ys, m, &r, &nd, &dom, name);
    }
}

/// The non-dominated and dominated cells, clipped to the box [r, ideal], are disjoint, lie in
/// the box, have the right dominance status, and their volumes add up to the box volume.
fn check_tiling(ys: &[f64], m: usize, r: &[f64], nd: &Cells, dom: &Cells, name: &str) {
    let front = bomf_bo::partitioning::pareto_front_better_than(ys, m, r).unwrap();
    // Ideal point of the front, or r + 1 when it is empty so the box is non-degenerate.
    let ideal: Vec<f64> = (0..m)
        .map(|d| {
            front
                .chunks_exact(m)
                .map(|p| p[d])
                .fold(r[d] + 1.0, f64::max)
        })
        .collect();
    let box_volume: f64 = ideal.iter().zip(r).map(|(i, r)| i - r).product();
    let total = nd.volume_clipped(&ideal) + dom.volume();
    assert!(
        close(total, box_volume, 1e-10),
        "{name}: tiling volume {total} vs {box_volume}"
    );

    let mut boxes: Vec<(Vec<f64>, Vec<f64>, bool)> = Vec::new();
    for (cells, dominated) in [(nd, false), (dom, true)] {
        for k in 0..cells.len() {
            let (lo, up) = cells.cell(k);
            for d in 0..m {
                assert!(
                    lo[d] >= r[d] - 1e-12,
                    "{name}: cell below the reference point"
                );
                assert!(lo[d] < up[d], "{name}: empty cell kept");
            }
            let up_clip: Vec<f64> = up.iter().zip(&ideal).map(|(u, i)| u.min(*i)).collect();
            if lo.iter().zip(&up_clip).any(|(l, u)| u <= l) {
                continue;
            }
            // Status of the cell's centre: dominated by some front point or not.
            let centre: Vec<f64> = lo
                .iter()
                .zip(&up_clip)
                .map(|(l, u)| 0.5 * (l + u))
                .collect();
            let is_dom = front
                .chunks_exact(m)
                .any(|p| p.iter().zip(&centre).all(|(a, c)| a >= c));
            assert_eq!(is_dom, dominated, "{name}: cell centre status");
            boxes.push((lo.to_vec(), up_clip, dominated));
        }
    }
    if boxes.len() <= 400 {
        for i in 0..boxes.len() {
            for j in i + 1..boxes.len() {
                let overlap: f64 = (0..m)
                    .map(|d| {
                        (boxes[i].1[d].min(boxes[j].1[d]) - boxes[i].0[d].max(boxes[j].0[d]))
                            .max(0.0)
                    })
                    .product();
                assert!(
                    overlap <= 1e-12 * box_volume,
                    "{name}: cells {i} and {j} overlap by {overlap}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pareto filtering edge cases (BoTorch semantics).
// ---------------------------------------------------------------------------------------------

/// O(n²) reference with BoTorch's definition; NaN rows are dropped.
fn brute_mask(ys: &[f64], m: usize, dedup: bool) -> Vec<bool> {
    let n = ys.len() / m;
    let row = |i: usize| &ys[i * m..(i + 1) * m];
    (0..n)
        .map(|i| {
            if row(i).iter().any(|v| v.is_nan()) {
                return false;
            }
            let dominated = (0..n).any(|j| {
                row(j).iter().zip(row(i)).all(|(a, b)| a >= b)
                    && row(j).iter().zip(row(i)).any(|(a, b)| a > b)
            });
            let dup_before = dedup && (0..i).any(|j| row(j) == row(i));
            !dominated && !dup_before
        })
        .collect()
}

#[test]
fn pareto_duplicates_nan_and_errors() {
    let ys = [1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 0.5, 0.5, f64::NAN, 9.0];
    assert_eq!(
        is_non_dominated(&ys, 2, true).unwrap(),
        [true, true, false, false, false]
    );
    assert_eq!(
        is_non_dominated(&ys, 2, false).unwrap(),
        [true, true, true, false, false]
    );
    let ys3: Vec<f64> = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 0.0, 2.0, 3.0, 3.0, 0.0, 0.0].to_vec();
    assert_eq!(
        is_non_dominated(&ys3, 3, true).unwrap(),
        [true, false, false, true]
    );
    assert_eq!(
        is_non_dominated(&ys3, 3, false).unwrap(),
        [true, true, false, true]
    );
    assert_eq!(
        pareto_front(&ys3, 3).unwrap(),
        [1.0, 2.0, 3.0, 3.0, 0.0, 0.0]
    );
    assert!(is_non_dominated(&[1.0, 2.0, 3.0], 2, true).is_err());
    assert!(is_non_dominated(&[1.0], 0, true).is_err());
    assert!(is_non_dominated(&[], 2, true).unwrap().is_empty());
    assert!(hypervolume(&[1.0, 1.0], 2, &[0.0]).is_err());
    assert!(hypervolume(&[1.0, 1.0], 2, &[0.0, f64::NAN]).is_err());
}

#[test]
fn indices_and_buffer_reuse() {
    assert_eq!(non_dominated_indices(&BOTORCH_FRONT, 2).unwrap(), [1, 2, 3]);
    // A reused buffer gives the same cells as a fresh one, across dimensions.
    let mut buf = Cells::new(3);
    nondominated_cells_into(&minus_unit_vectors(3), 3, &[-2.0; 3], &mut buf).unwrap();
    assert_eq!(
        buf,
        nondominated_cells(&minus_unit_vectors(3), 3, &[-2.0; 3]).unwrap()
    );
    nondominated_cells_into(&BOTORCH_FRONT, 2, &[0.0, 0.0], &mut buf).unwrap();
    assert_eq!(
        buf,
        nondominated_cells(&BOTORCH_FRONT, 2, &[0.0, 0.0]).unwrap()
    );
    assert!(nondominated_cells_into(&BOTORCH_FRONT, 2, &[0.0], &mut buf).is_err());
}

#[test]
fn points_not_strictly_better_than_ref_are_ignored() {
    // (5, 0) ties the reference in objective 1: no volume, no cells of its own.
    let ys = [5.0, 0.0, 1.0, 1.0];
    assert_eq!(hypervolume(&ys, 2, &[0.0, 0.0]).unwrap(), 1.0);
    assert_eq!(nondominated_cells(&ys, 2, &[0.0, 0.0]).unwrap().len(), 2);
    assert_eq!(hypervolume(&[], 3, &[0.0; 3]).unwrap(), 0.0);
    // Empty front: one cell, the whole orthant above r.
    for m in 1..=4 {
        let cells = nondominated_cells(&[], m, &vec![0.5; m]).unwrap();
        assert_eq!(cells.len(), 1, "m={m}");
        assert_eq!(cells.cell(0).0, &vec![0.5; m][..]);
        assert!(cells.cell(0).1.iter().all(|u| u.is_infinite()));
    }
}

#[test]
fn one_objective() {
    let ys = [1.0, 3.0, 2.0];
    assert_eq!(hypervolume(&ys, 1, &[0.5]).unwrap(), 2.5);
    let nd = nondominated_cells(&ys, 1, &[0.5]).unwrap();
    assert_eq!((nd.lower(), nd.upper()), (&[3.0][..], &[f64::INFINITY][..]));
    assert_eq!(dominated_cells(&ys, 1, &[0.5]).unwrap().volume(), 2.5);
}

// ---------------------------------------------------------------------------------------------
// infer_reference_point: BoTorch's rule, checked against its formula.
// ---------------------------------------------------------------------------------------------

#[test]
fn infer_reference_point_rules() {
    // nadir − 0.1 · (ideal − nadir)
    let front = [1.0, 4.0, 3.0, 2.0, 2.0, 3.0];
    let r = infer_reference_point(&front, 2, None, 0.1).unwrap();
    let want = [1.0 - 0.1 * (3.0 - 1.0), 2.0 - 0.1 * (4.0 - 2.0)];
    assert!(
        r.iter().zip(&want).all(|(a, b)| close(*a, *b, 1e-15)),
        "{r:?}"
    );
    // flat objective: range clamped to 1e-7
    let flat_front = [1.0, 5.0, 2.0, 5.0];
    let r = infer_reference_point(&flat_front, 2, None, 0.1).unwrap();
    assert!(close(r[1], 5.0 - 0.1 * 1e-7, 1e-15));
    // singleton: y − 0.1·|y|, and 0 − 0.1·1e-7 for a zero coordinate
    let r = infer_reference_point(&[-2.0, 0.0], 2, None, 0.1).unwrap();
    assert!(
        close(r[0], -2.0 - 0.2, 1e-15) && close(r[1], -1e-8, 1e-15),
        "{r:?}"
    );
    // max_ref_point beaten by some point: returned as is
    let r = infer_reference_point(&front, 2, Some(&[0.0, 0.0]), 0.1).unwrap();
    assert_eq!(r, [0.0, 0.0]);
    // max_ref_point not beaten: nadir capped by it
    let r = infer_reference_point(&front, 2, Some(&[10.0, 1.5]), 0.1).unwrap();
    let want = [1.0 - 0.1 * (3.0 - 1.0), 1.5 - 0.1 * (4.0 - 1.5)];
    assert!(
        r.iter().zip(&want).all(|(a, b)| close(*a, *b, 1e-15)),
        "{r:?}"
    );
    // NaN entries in max_ref_point: those objectives are inferred, the others taken as given
    let r = infer_reference_point(&front, 2, Some(&[f64::NAN, 0.0]), 0.1).unwrap();
    assert!(close(r[0], 1.0 - 0.2, 1e-15) && r[1] == 0.0, "{r:?}");
    // errors
    assert!(infer_reference_point(&[], 2, None, 0.1).is_err());
    assert!(infer_reference_point(&[], 2, Some(&[f64::NAN, 0.0]), 0.1).is_err());
    assert_eq!(
        infer_reference_point(&[], 2, Some(&[1.0, 0.0]), 0.1).unwrap(),
        [1.0, 0.0]
    );
    assert!(infer_reference_point(&[1.0, f64::NAN], 2, None, 0.1).is_err());
}

// ---------------------------------------------------------------------------------------------
// Property tests.
// ---------------------------------------------------------------------------------------------

/// Monte-Carlo hypervolume with a fixed-seed LCG (no rand dependency needed in the test).
fn mc_hypervolume(front: &[f64], m: usize, r: &[f64], samples: usize) -> (f64, f64) {
    let ideal: Vec<f64> = (0..m)
        .map(|d| front.chunks_exact(m).map(|p| p[d]).fold(r[d], f64::max))
        .collect();
    let vol: f64 = ideal.iter().zip(r).map(|(i, r)| i - r).product();
    if vol == 0.0 {
        return (0.0, 0.0);
    }
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut hits = 0usize;
    let mut x = vec![0.0; m];
    for _ in 0..samples {
        for d in 0..m {
            x[d] = r[d] + uniform() * (ideal[d] - r[d]);
        }
        if front
            .chunks_exact(m)
            .any(|p| p.iter().zip(&x).all(|(a, b)| a >= b))
        {
            hits += 1;
        }
    }
    let p = hits as f64 / samples as f64;
    // estimate and its standard error
    (vol * p, vol * (p * (1.0 - p) / samples as f64).sqrt())
}

fn points(m: usize, max_n: usize, grid: bool) -> impl Strategy<Value = Vec<f64>> {
    let coord = if grid {
        (0i32..6).prop_map(f64::from).boxed()
    } else {
        (-0.5f64..4.0).boxed()
    };
    prop::collection::vec(prop::collection::vec(coord, m), 0..=max_n)
        .prop_map(|rows| rows.into_iter().flatten().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mask_matches_brute_force(m in 1usize..5, grid in any::<bool>(), seed_rows in points(4, 25, true)) {
        // reuse the 4-wide rows, truncated to m columns; grid values give many ties
        let rows: Vec<f64> = seed_rows.chunks_exact(4).flat_map(|r| r[..m].to_vec()).map(|v| if grid { v } else { v * 0.37 }).collect();
        for dedup in [true, false] {
            prop_assert_eq!(is_non_dominated(&rows, m, dedup).unwrap(), brute_mask(&rows, m, dedup));
        }
    }

    #[test]
    fn hv_equals_dominated_cells_and_monte_carlo(m in 2usize..5, grid in any::<bool>(), ys in points(4, 9, false), gys in points(4, 9, true)) {
        let src = if grid { &gys } else { &ys };
        let rows: Vec<f64> = src.chunks_exact(4).flat_map(|r| r[..m].to_vec()).collect();
        let r = vec![0.0; m];
        let hv = hypervolume(&rows, m, &r).unwrap();
        let dom = dominated_cells(&rows, m, &r).unwrap().volume();
        prop_assert!(close(hv, dom, 1e-10), "wfg {} vs cells {}", hv, dom);
        let front = bomf_bo::partitioning::pareto_front_better_than(&rows, m, &r).unwrap();
        let (mc, se) = mc_hypervolume(&front, m, &r, 20_000);
        prop_assert!((hv - mc).abs() <= 5.0 * se + 1e-9, "hv {} vs monte carlo {} ± {}", hv, mc, se);
        let nd = nondominated_cells(&rows, m, &r).unwrap();
        let dom_cells = dominated_cells(&rows, m, &r).unwrap();
        check_tiling(&rows, m, &r, &nd, &dom_cells, "proptest");
    }

    /// Lifting a 2-D front into 3-D with a constant third objective runs the general (m ≥ 3)
    /// algorithms against the 2-D closed forms.
    #[test]
    fn general_algorithms_agree_with_2d_closed_forms(ys in points(2, 15, false), c in 0.5f64..3.0) {
        let r2 = [0.0, 0.0];
        let lifted: Vec<f64> = ys.chunks_exact(2).flat_map(|p| [p[0], p[1], c]).collect();
        let r3 = [0.0, 0.0, 0.0];
        let hv2 = hypervolume(&ys, 2, &r2).unwrap();
        prop_assert!(close(hypervolume(&lifted, 3, &r3).unwrap(), hv2 * c, 1e-10));
        prop_assert!(close(dominated_cells(&lifted, 3, &r3).unwrap().volume(), hv2 * c, 1e-10));
        // Non-dominated volume inside [r, ideal] agrees after the same lift.
        let front = pareto_front(&ys, 2).unwrap();
        let ideal2: Vec<f64> = (0..2).map(|d| front.chunks_exact(2).map(|p| p[d]).fold(1.0, f64::max)).collect();
        let nd2 = nondominated_cells(&ys, 2, &r2).unwrap().volume_clipped(&ideal2);
        let nd3 = nondominated_cells(&lifted, 3, &r3).unwrap().volume_clipped(&[ideal2[0], ideal2[1], c]);
        let has_front = !pareto_front_better(&ys, &r2).is_empty();
        if has_front {
            prop_assert!(close(nd3, nd2 * c, 1e-10), "nd3 {} vs nd2·c {}", nd3, nd2 * c);
        }
    }
}

fn pareto_front_better(ys: &[f64], r: &[f64]) -> Vec<f64> {
    bomf_bo::partitioning::pareto_front_better_than(ys, 2, r).unwrap()
}
