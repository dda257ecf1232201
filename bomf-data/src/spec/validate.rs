//! [`DataSpec::validate`]: which fields apply to which format, and which split needs what.

use super::{DataFormat, DataSpec, SplitSpec};
use crate::error::{DataError, Result};
use crate::split::SplitConfig;
use crate::task::GlueTask;

impl DataSpec {
    /// Checks that the fields fit the format and the split; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: &str| self.invalid(field, why);
        let tabular = self.format.tabular().is_some();
        let set: [(&str, bool, bool); 10] = [
            // (field, is set, applies to this format)
            (
                "keep",
                self.keep.is_some(),
                tabular || self.format == DataFormat::Mcqa,
            ),
            ("task", self.task.is_some(), self.format == DataFormat::Glue),
            ("text_fields", self.text_fields.is_some(), tabular),
            ("label_field", self.label_field.is_some(), tabular),
            ("labels", self.labels.is_some(), tabular),
            ("id_field", self.id_field.is_some(), tabular),
            ("regression", self.regression, tabular),
            (
                "as_classification",
                self.as_classification.is_some(),
                self.format == DataFormat::Bigbench,
            ),
            (
                "body_only",
                self.body_only.is_some(),
                self.format == DataFormat::Spam,
            ),
            ("mcqa", self.mcqa.is_some(), self.format == DataFormat::Mcqa),
        ];
        for (field, is_set, applies) in set {
            if is_set && !applies {
                return bad(field, "does not apply to this format");
            }
        }
        if tabular && self.text_fields.is_none() {
            return bad(
                "text_fields",
                "is required: the input column(s), e.g. [\"text\"]",
            );
        }
        if self.format == DataFormat::Glue {
            match &self.task {
                None => return bad("task", "is required: the GLUE task, e.g. \"mrpc\""),
                Some(t) => {
                    GlueTask::parse(t)?;
                }
            }
        }
        if let Some(keep) = &self.keep {
            keep.validate()?;
        }
        if self.as_generation && self.regression {
            return bad("as_generation", "needs classes, not regression targets");
        }
        if let Some(metrics) = &self.metrics
            && metrics.is_empty()
        {
            return bad("metrics", "must list at least one metric when given");
        }
        self.validate_split()
    }

    /// Checks that `split` fits the format and that the files it needs are named once.
    fn validate_split(&self) -> Result<()> {
        let bad = |field: &str, why: &str| self.invalid(field, why);
        let has_source = self.path.is_some();
        match &self.split {
            SplitSpec::Files {
                train,
                validation,
                test,
            } => {
                let any_file = train.is_some() || validation.is_some() || test.is_some();
                if self.format == DataFormat::Glue && !any_file {
                    if self.path.is_none() {
                        return bad("path", "is required: the GLUE folder (holding MRPC/, ...)");
                    }
                } else if !any_file {
                    return bad(
                        "split",
                        "`kind = \"files\"` needs at least one of `train`, `validation`, `test`",
                    );
                } else if has_source {
                    return bad(
                        "path",
                        "with `kind = \"files\"` the files are given in [split]; remove it",
                    );
                }
            }
            SplitSpec::ByRank { .. } | SplitSpec::Fractions { .. } => {
                if !has_source {
                    return bad("path", "is required: the file (or folder) to split");
                }
                if let SplitSpec::Fractions {
                    train,
                    validation,
                    test,
                    seed,
                } = self.split
                {
                    SplitConfig::new(train, validation, test, seed)?;
                }
            }
            SplitSpec::HoldOut { validation, .. } => {
                if has_source {
                    return bad(
                        "path",
                        "with `kind = \"hold_out\"` the files are given in [split]; remove it",
                    );
                }
                if *validation == 0 {
                    return bad("split.validation", "must hold out at least one example");
                }
            }
            SplitSpec::GlueProtocol { .. } => {
                if self.format != DataFormat::Glue {
                    return bad(
                        "split",
                        "`kind = \"glue_protocol\"` needs format = \"glue\"",
                    );
                }
                if self.path.is_none() {
                    return bad("path", "is required: the GLUE folder (holding MRPC/, ...)");
                }
            }
        }
        Ok(())
    }

    /// The error for `field`, naming the format.
    fn invalid(&self, field: &str, why: &str) -> Result<()> {
        Err(DataError::InvalidConfig(format!(
            "data field `{field}`: {why} (format = \"{}\")",
            self.format.name()
        )))
    }
}
