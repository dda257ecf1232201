//! The Rotten Tomatoes review snippets of the assets, as the two review examples read them.

use bomf_data::metrics::Metric;
use bomf_data::readers::tabular::{ColumnMapping, RowFilter, read_tabular};
use bomf_data::task::Dataset;

/// The fresh and rotten snippets (the corpus's plot summaries left out), scored by accuracy: a
/// tabular file names no metrics of its own.
pub fn rotten_tomatoes() -> anyhow::Result<Dataset> {
    let mut mapping = ColumnMapping::classification(&["text"], "category");
    mapping.name = "rotten_tomatoes".into();
    mapping.keep = Some(RowFilter {
        field: "category".into(),
        values: vec!["fresh".into(), "rotten".into()],
    });
    let mut dataset = read_tabular(&bomf_data::assets::rotten_tomatoes_csv(), &mapping)?;
    dataset.task.metrics = vec![Metric::Accuracy];
    Ok(dataset)
}
