//! Batching: padding never changes real tokens, every example once per epoch, same seed same
//! batches, targets follow their rows, and bucketing saves slots.

use bomf_data::DataError;
use bomf_data::batch::{
    Batch, BatchConfig, BatchTargets, Batcher, Bucketing, Item, ItemTarget, PadTo, plan_batches,
};
use bomf_data::tokenize::IGNORE_INDEX;
use proptest::prelude::*;

const PAD: u32 = 7;

fn item(ids: Vec<u32>, target: ItemTarget) -> Item {
    let type_ids = ids
        .iter()
        .enumerate()
        .map(|(k, _)| u32::from(k >= ids.len() / 2))
        .collect();
    Item {
        ids,
        type_ids,
        target,
    }
}

/// The first batch of epoch 0 of `items` batched with `config`.
fn first_batch(items: Vec<Item>, config: BatchConfig) -> Batch {
    Batcher::new(items, PAD, config)
        .unwrap()
        .epoch(0)
        .swap_remove(0)
}

fn bucketing_strategy() -> impl Strategy<Value = Bucketing> {
    prop_oneof![
        Just(Bucketing::None),
        Just(Bucketing::SortAll),
        (1usize..5).prop_map(|factor| Bucketing::MegaBatch { factor }),
    ]
}

fn config_strategy() -> impl Strategy<Value = BatchConfig> {
    (
        1usize..9,
        any::<bool>(),
        any::<u64>(),
        bucketing_strategy(),
        prop_oneof![
            Just(PadTo::Longest),
            (1usize..9).prop_map(PadTo::MultipleOf)
        ],
    )
        .prop_map(
            |(batch_size, shuffle, seed, bucketing, pad_to)| BatchConfig {
                batch_size,
                shuffle,
                seed,
                bucketing,
                pad_to,
            },
        )
}

fn items_strategy() -> impl Strategy<Value = Vec<Item>> {
    // Token ids avoid nothing in particular: a real token may even equal the pad id.
    prop::collection::vec((prop::collection::vec(0u32..50, 1..40), 0usize..3), 1..50).prop_map(
        |rows| {
            rows.into_iter()
                .map(|(ids, c)| item(ids, ItemTarget::Class(c)))
                .collect()
        },
    )
}

proptest! {
    #[test]
    fn padding_keeps_tokens_and_every_example_appears_once(items in items_strategy(), config in config_strategy(), epoch in 0u64..4) {
        let batcher = Batcher::new(items.clone(), PAD, config).unwrap();
        let batches = batcher.epoch(epoch);
        let mut seen = Vec::new();
        for batch in &batches {
            prop_assert!(batch.rows <= config.batch_size);
            prop_assert_eq!(batch.input_ids.len(), batch.rows * batch.seq_len);
            let longest = batch.example_indices.iter().map(|&i| items[i].ids.len()).max().unwrap();
            match config.pad_to {
                PadTo::Longest => prop_assert_eq!(batch.seq_len, longest),
                PadTo::MultipleOf(m) => prop_assert!(batch.seq_len >= longest && batch.seq_len % m == 0 && batch.seq_len < longest + m),
                PadTo::Fixed(_) => unreachable!(),
            }
            for (r, &index) in batch.example_indices.iter().enumerate() {
                let it = &items[index];
                let row = r * batch.seq_len..(r + 1) * batch.seq_len;
                let ids = &batch.input_ids[row.clone()];
                let mask = &batch.attention_mask[row.clone()];
                let types = &batch.token_type_ids[row];
                let n = it.ids.len();
                prop_assert!(ids[..n].iter().zip(&it.ids).all(|(&a, &b)| a == i64::from(b)));
                prop_assert!(ids[n..].iter().all(|&a| a == i64::from(PAD)));
                prop_assert!(mask[..n].iter().all(|&m| m == 1) && mask[n..].iter().all(|&m| m == 0));
                prop_assert!(types[..n].iter().zip(&it.type_ids).all(|(&a, &b)| a == i64::from(b)));
                prop_assert!(types[n..].iter().all(|&t| t == 0));
                if let (BatchTargets::Classes(c), ItemTarget::Class(want)) = (&batch.targets, &it.target) {
                    prop_assert_eq!(c[r], *want as i64);
                } else {
                    prop_assert!(false, "class targets expected");
                }
                seen.push(index);
            }
        }
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..items.len()).collect::<Vec<_>>());
        let real: usize = items.iter().map(|i| i.ids.len()).sum();
        let stats = batcher.padding_stats(epoch);
        prop_assert_eq!(stats.real_tokens, real);
        prop_assert_eq!(stats.padded_slots, batches.iter().map(|b| b.slots()).sum::<usize>());
        prop_assert_eq!(stats.real_tokens as i64, batches.iter().map(|b| b.attention_mask.iter().sum::<i64>()).sum::<i64>());
    }

    #[test]
    fn same_seed_same_batches(lengths in prop::collection::vec(1usize..100, 0..80), config in config_strategy(), epoch in 0u64..5) {
        let a = plan_batches(&lengths, &config, epoch).unwrap();
        let b = plan_batches(&lengths, &config, epoch).unwrap();
        prop_assert_eq!(&a, &b);
        let mut all: Vec<usize> = a.concat();
        all.sort_unstable();
        prop_assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
    }
}

#[test]
fn shuffling_changes_with_seed_and_epoch_but_not_without_shuffle() {
    let lengths: Vec<usize> = (0..200).map(|i| 1 + (i * 37) % 61).collect();
    let config = BatchConfig::train(8, 42);
    let e0 = plan_batches(&lengths, &config, 0).unwrap();
    assert_ne!(
        e0,
        plan_batches(&lengths, &config, 1).unwrap(),
        "epochs differ"
    );
    assert_ne!(
        e0,
        plan_batches(&lengths, &BatchConfig::train(8, 43), 0).unwrap(),
        "seeds differ"
    );
    let eval = BatchConfig::eval(8);
    assert_eq!(
        plan_batches(&lengths, &eval, 0).unwrap(),
        plan_batches(&lengths, &eval, 9).unwrap()
    );
    let sequential = BatchConfig {
        bucketing: Bucketing::None,
        ..eval
    };
    assert_eq!(
        plan_batches(&lengths, &sequential, 0).unwrap()[0],
        (0..8).collect::<Vec<_>>()
    );
}

#[test]
fn bucketing_saves_padding_on_mixed_lengths() {
    let items: Vec<Item> = (0..512u32)
        .map(|i| item(vec![1; 1 + ((i * 7919) % 97) as usize], ItemTarget::None))
        .collect();
    let padding = |config| {
        Batcher::new(items.clone(), PAD, config)
            .unwrap()
            .padding_stats(0)
    };
    let random = padding(BatchConfig {
        bucketing: Bucketing::None,
        ..BatchConfig::train(16, 0)
    });
    let bucketed = padding(BatchConfig::train(16, 0));
    let sorted = padding(BatchConfig::eval(16));
    let fixed = padding(BatchConfig {
        pad_to: PadTo::Fixed(128),
        ..BatchConfig::eval(16)
    });
    assert_eq!(fixed.padded_slots, 512 * 128);
    assert!(bucketed.padded_slots < random.padded_slots);
    assert!(sorted.padded_slots <= bucketed.padded_slots);
    assert!(random.padded_slots < fixed.padded_slots);
    assert_eq!(random.real_tokens, sorted.real_tokens);
}

#[test]
fn seq2seq_and_causal_labels_are_padded_with_ignore_index() {
    let items = vec![
        item(vec![5, 6, 7], ItemTarget::Labels(vec![1, 2])),
        item(vec![5], ItemTarget::Labels(vec![3, 4, 5, 6])),
    ];
    let batch = first_batch(
        items,
        BatchConfig {
            bucketing: Bucketing::None,
            ..BatchConfig::eval(2)
        },
    );
    assert_eq!(batch.shape(), [2, 3]);
    assert_eq!(
        batch.targets,
        BatchTargets::Tokens {
            labels: vec![1, 2, IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5, 6],
            len: 4
        }
    );

    let causal = vec![
        item(
            vec![1, 2, 3, 4],
            ItemTarget::AlignedLabels(vec![IGNORE_INDEX, IGNORE_INDEX, 3, 4]),
        ),
        item(vec![1, 9], ItemTarget::AlignedLabels(vec![IGNORE_INDEX, 9])),
    ];
    let batch = first_batch(
        causal,
        BatchConfig {
            pad_to: PadTo::MultipleOf(8),
            ..BatchConfig::eval(2)
        },
    );
    assert_eq!(batch.shape(), [2, 8]);
    match &batch.targets {
        BatchTargets::Tokens { labels, len } => {
            assert_eq!(*len, 8);
            assert_eq!(
                &labels[..8],
                &[
                    IGNORE_INDEX,
                    IGNORE_INDEX,
                    3,
                    4,
                    IGNORE_INDEX,
                    IGNORE_INDEX,
                    IGNORE_INDEX,
                    IGNORE_INDEX
                ]
            );
            assert_eq!(&labels[8..10], &[IGNORE_INDEX, 9]);
        }
        other => panic!("{other:?}"),
    }
    // Scores come through as f32 in row order.
    let scores = vec![
        item(vec![1], ItemTarget::Score(4.75)),
        item(vec![1, 2], ItemTarget::Score(0.5)),
    ];
    let batch = first_batch(scores, BatchConfig::eval(4));
    assert_eq!(batch.example_indices, vec![1, 0], "sorted longest first");
    assert_eq!(batch.targets, BatchTargets::Scores(vec![0.5, 4.75]));
}

#[test]
fn bad_batching_input_is_an_error() {
    let one = || vec![item(vec![1, 2, 3], ItemTarget::Class(0))];
    assert!(matches!(
        Batcher::new(vec![], PAD, BatchConfig::eval(2)),
        Err(DataError::Empty { .. })
    ));
    for config in [
        BatchConfig::eval(0),
        BatchConfig {
            pad_to: PadTo::Fixed(2),
            ..BatchConfig::eval(2)
        },
        BatchConfig {
            bucketing: Bucketing::MegaBatch { factor: 0 },
            ..BatchConfig::eval(2)
        },
    ] {
        assert!(
            matches!(
                Batcher::new(one(), PAD, config),
                Err(DataError::InvalidConfig(_))
            ),
            "{config:?}"
        );
    }
    let mixed = vec![
        item(vec![1], ItemTarget::Class(0)),
        item(vec![1], ItemTarget::Score(1.0)),
    ];
    assert!(matches!(
        Batcher::new(mixed, PAD, BatchConfig::eval(2)),
        Err(DataError::InconsistentTargets(_))
    ));
    let batcher = Batcher::new(one(), PAD, BatchConfig::eval(2)).unwrap();
    assert!(matches!(
        batcher.collate(&[1]),
        Err(DataError::InvalidConfig(_))
    ));
    assert!(matches!(batcher.collate(&[]), Err(DataError::Empty { .. })));
    assert_eq!(batcher.collate(&[0, 0]).unwrap().rows, 2);
    let misaligned = vec![item(vec![1, 2], ItemTarget::AlignedLabels(vec![1]))];
    assert!(matches!(
        Batcher::new(misaligned, PAD, BatchConfig::eval(2)),
        Err(DataError::InvalidConfig(_))
    ));
}

#[test]
fn items_for_dataset_carries_the_task_targets() {
    use bomf_data::batch::items_for_dataset;
    use bomf_data::readers::glue::{GlueSplit, read_glue_dir};
    use bomf_data::readers::samsum::read_samsum;
    use bomf_data::task::GlueTask;
    use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let bert = TextEncoder::from_file(
        &root.join("tokenizer/wordpiece.json"),
        EncoderConfig::new(ModelFamily::Bert, 32),
    )
    .unwrap();
    let mnli = read_glue_dir(&root.join("data/glue"), GlueTask::Mnli, GlueSplit::Dev).unwrap();
    let items = items_for_dataset(&bert, &mnli).unwrap();
    let classes: Vec<_> = items.iter().map(|i| i.target.clone()).collect();
    assert_eq!(
        classes,
        vec![
            ItemTarget::Class(1),
            ItemTarget::Class(2),
            ItemTarget::Class(0)
        ]
    );
    assert!(
        items.iter().all(|i| i.type_ids.contains(&1)),
        "pairs get segment ids"
    );

    let mut config = EncoderConfig::new(ModelFamily::T5, 64);
    config.max_target_length = Some(16);
    let t5 = TextEncoder::from_file(&root.join("tokenizer/bpe.json"), config).unwrap();
    let samsum = read_samsum(&root.join("data/samsum.json"), true).unwrap();
    let items = items_for_dataset(&t5, &samsum).unwrap();
    for item in &items {
        match &item.target {
            ItemTarget::Labels(labels) => assert!(!labels.is_empty() && labels.len() <= 16),
            other => panic!("{other:?}"),
        }
    }
    let squad = bomf_data::readers::squad::read_squad(&root.join("data/squad_v1.json")).unwrap();
    assert!(matches!(
        items_for_dataset(&bert, &squad),
        Err(DataError::Unsupported(_))
    ));
}
