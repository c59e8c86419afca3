//! The YAML tree of an endpoints file: loading it with bounded nesting, and
//! reading its nodes (tags, scalars, nulls, kinds, positions).

use saphyr::{MarkedYaml, Scalar, YamlData, YamlLoader};
use saphyr_parser::{Event, Marker, Parser, SpannedEventReceiver};

use super::MAX_DEPTH;
use crate::{Error, Result};

/// Loads the YAML documents, refusing nesting deeper than [`MAX_DEPTH`].
///
/// Events are pulled one by one rather than with `Parser::load`, which
/// recurses once per nesting level.
pub(super) fn load<'i>(yaml: &'i str, source: &str) -> Result<Vec<MarkedYaml<'i>>> {
    let syntax = |info: &str, mark: &Marker| {
        Error::config(
            source,
            format!(
                "not valid YAML: {info} at line {}, column {}; fix the file there",
                mark.line(),
                mark.col() + 1
            ),
        )
    };
    let mut loader: YamlLoader<'i, MarkedYaml<'i>> = YamlLoader::default();
    // Keep scalars as written: they are typed per setting.
    loader.early_parse(false);
    let mut depth = 0usize;
    for event in Parser::new_from_str(yaml) {
        let (event, span) = event.map_err(|e| syntax(e.info(), e.marker()))?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(syntax(
                        &format!("nested more than {MAX_DEPTH} levels deep"),
                        &span.start,
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        loader.on_event(event, span);
        if let Some(e) = loader.error() {
            return Err(syntax(e.info(), e.marker()));
        }
    }
    Ok(loader.into_documents())
}

pub(super) fn untag<'a, 'i>(mut node: &'a MarkedYaml<'i>) -> &'a MarkedYaml<'i> {
    while let YamlData::Tagged(_, inner) = &node.data {
        node = inner;
    }
    node
}

/// The text of a scalar node as written.
pub(super) fn scalar_text<'a>(node: &'a MarkedYaml<'_>) -> Option<&'a str> {
    match &untag(node).data {
        YamlData::Representation(text, _, _) => Some(text),
        YamlData::Value(Scalar::String(text)) => Some(text),
        _ => None,
    }
}

pub(super) fn is_null(node: &MarkedYaml<'_>) -> bool {
    match &node.data {
        YamlData::Representation(text, style, tag) => matches!(
            Scalar::parse_from_cow_and_metadata(text.clone(), *style, tag.as_ref()),
            Some(Scalar::Null)
        ),
        YamlData::Value(v) => v.is_null(),
        _ => false,
    }
}

pub(super) fn kind(node: &MarkedYaml<'_>) -> &'static str {
    match &untag(node).data {
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        _ => "a single value",
    }
}

/// Where a node starts, for messages.
pub(super) fn at(node: &MarkedYaml<'_>) -> String {
    let m = node.span.start;
    format!("line {}, column {}", m.line(), m.col() + 1)
}
