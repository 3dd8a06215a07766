//! From the file's bytes to a typed [`OrderList`], reporting every problem found.
//!
//! The JSON is first read into a generic value (so a syntax error gets its line and
//! column), then walked field by field: a wrong type, a missing or unknown field, a bad
//! prefix or date is recorded and the walk goes on, so the operator sees all of them at
//! once. Checks that need the deployment's settings live in `validate`.

use serde_json::{Map, Value};

use super::{
    problem::{show, Place, Problems},
    window::{parse_date, Instant},
    Action, Direction, Exception, Listed, Order, OrderList, FORMAT_VERSION,
};
use crate::prefix::{Prefix, PrefixError};

/// Longest order id.
pub const MAX_ID_CHARS: usize = 128;
/// Longest free-text field (authority, basis, note, reason).
pub const MAX_TEXT_CHARS: usize = 4096;

const TOP_FIELDS: &[&str] = &["version", "orders", "exceptions"];
const ORDER_FIELDS: &[&str] = &[
    "id",
    "authority",
    "issued",
    "valid_from",
    "expires",
    "basis",
    "action",
    "direction",
    "prefixes",
    "domains",
    "allow_broad",
    "allow_shared",
    "note",
];
const EXCEPTION_FIELDS: &[&str] = &["prefix", "reason"];

/// What parsing found: the orders and exceptions that parsed cleanly (with their index
/// in the file), so that the policy checks can still report on them when others failed.
#[derive(Debug, Default)]
pub struct Partial {
    /// Each order with its index, and for a partly read one the position in the file of
    /// each prefix it kept.
    pub orders: Vec<(usize, Order, Option<Vec<usize>>)>,
    pub exceptions: Vec<(usize, Exception)>,
}

/// An order that failed to read cleanly: what could be read, and the position in the
/// file of each prefix kept.
#[derive(Debug)]
pub struct PartlyRead {
    pub order: Order,
    pub positions: Vec<usize>,
}

/// Parses an order list. The list is returned only when there is no error; warnings
/// may come with it.
pub fn parse(bytes: &[u8]) -> (Option<OrderList>, Problems) {
    let (list, _, problems) = parse_partial(bytes);
    (list, problems)
}

/// Like [`parse`], also returning what parsed cleanly when the whole did not.
pub fn parse_partial(bytes: &[u8]) -> (Option<OrderList>, Partial, Problems) {
    let mut problems = Problems::default();
    let value: Value = match super::json::parse_strict(bytes) {
        Ok(v) => v,
        Err(e) => {
            let place = Place::File {
                line: Some(e.line()),
                column: Some(e.column()),
            };
            problems.error(&place, None, None, json_error_message(&e, bytes));
            return (None, Partial::default(), problems);
        }
    };
    let mut partial = Partial::default();
    let list = read_list(&value, &mut partial, &mut problems);
    if problems.has_errors() {
        (None, partial, problems)
    } else {
        (list, partial, problems)
    }
}

/// serde_json's message without the position (which the place already gives), and
/// what an editor or a damaged disk may have done.
fn json_error_message(e: &serde_json::Error, bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return "the file is empty: an empty order list is {\"version\": 1, \"orders\": []}".into();
    }
    if bytes.starts_with(b"\xef\xbb\xbf") {
        return "the file starts with a byte order mark (BOM): save it as UTF-8 without one".into();
    }
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let hint = if std::str::from_utf8(bytes).is_err() {
        " (the file is not valid UTF-8)"
    } else if bytes.contains(&0) {
        " (the file contains NUL bytes: is it damaged, or not a text file?)"
    } else {
        ""
    };
    format!("invalid JSON: {text}{hint}")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the fields of one JSON object, recording problems against `place`.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    place: Place,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, place: Place, known: &[&str], p: &mut Problems) -> Self {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = closest(key, known)
                    .map(|k| format!("; did you mean {k:?}?"))
                    .unwrap_or_default();
                p.error(
                    &place,
                    field_name(key),
                    None,
                    format!("unknown field (fields are {}){hint}", known.join(", ")),
                );
            }
        }
        Self { map, place }
    }

    fn get(&self, key: &str, required: bool, p: &mut Problems) -> Option<&'a Value> {
        match self.map.get(key) {
            Some(v) => Some(v),
            None => {
                if required {
                    p.error(
                        &self.place,
                        key.to_string(),
                        None,
                        "required field is missing",
                    );
                }
                None
            }
        }
    }

    fn wrong_type(&self, key: &str, v: &Value, wanted: &str, p: &mut Problems) {
        p.error(
            &self.place,
            key.to_string(),
            show(v),
            format!("must be {wanted}, not {}", type_name(v)),
        );
    }

    /// A string field, checked for length.
    fn string(&self, key: &str, required: bool, p: &mut Problems) -> Option<String> {
        let v = self.get(key, required, p)?;
        let Some(s) = v.as_str() else {
            self.wrong_type(key, v, "a string", p);
            return None;
        };
        let chars = s.chars().count();
        if chars > MAX_TEXT_CHARS {
            p.error(
                &self.place,
                key.to_string(),
                show(v),
                format!("longer than {MAX_TEXT_CHARS} characters"),
            );
            return None;
        }
        if required && s.trim().is_empty() {
            p.error(&self.place, key.to_string(), show(v), "must not be empty");
            return None;
        }
        Some(s.to_string())
    }

    fn boolean(&self, key: &str, p: &mut Problems) -> Option<bool> {
        let v = self.get(key, false, p)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong_type(key, v, "true or false", p);
                None
            }
        }
    }

    /// A string field parsed by `parse`, keeping the text.
    fn parsed<T>(
        &self,
        key: &str,
        required: bool,
        p: &mut Problems,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Listed<T>> {
        let text = self.string(key, required, p)?;
        match parse(&text) {
            Ok(value) => Some(Listed { text, value }),
            Err(why) => {
                p.error(
                    &self.place,
                    key.to_string(),
                    show(&Value::String(text)),
                    why,
                );
                None
            }
        }
    }

    fn one_of<T: Copy>(
        &self,
        key: &str,
        required: bool,
        names: &[&str],
        p: &mut Problems,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let text = self.string(key, required, p)?;
        match parse(&text) {
            Some(v) => Some(v),
            None => {
                p.error(
                    &self.place,
                    key.to_string(),
                    show(&Value::String(text)),
                    format!("must be one of {}", names.join(", ")),
                );
                None
            }
        }
    }
}

/// An unknown field's name as a message shows it: as written when it is a plain name,
/// else quoted, escaped and cut like a value (a key can hold anything, newlines
/// included, and must not forge lines in a log).
fn field_name(key: &str) -> String {
    const PLAIN: usize = 64;
    if key.len() <= PLAIN && !key.chars().any(char::is_control) {
        key.to_string()
    } else {
        show(&Value::String(key.to_string()))
    }
}

/// The known name closest to a misspelt one, if any is close.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub fn prefix_problem(e: &PrefixError) -> String {
    match e {
        PrefixError::Syntax { .. } => "not an IPv4 or IPv6 address or prefix".into(),
        PrefixError::HostBits { network, .. } => {
            format!("host bits are set; the network is {network} (or write a single address without /length)")
        }
        PrefixError::LengthOutOfRange { len, family } => format!(
            "prefix length {} is out of range for {} (0 to {})",
            cut(len),
            family.name(),
            family.bits()
        ),
    }
}

/// Text from the file inside a message, cut like a value (the value itself is shown
/// beside the message already).
fn cut(text: &str) -> String {
    const LIMIT: usize = 40;
    if text.chars().count() <= LIMIT {
        text.to_string()
    } else {
        let head: String = text.chars().take(LIMIT).collect();
        format!("{head}...")
    }
}

fn read_list(value: &Value, partial: &mut Partial, p: &mut Problems) -> Option<OrderList> {
    let file = Place::File {
        line: None,
        column: None,
    };
    let Some(map) = value.as_object() else {
        p.error(
            &file,
            None,
            show(value),
            format!(
                "the top level must be an object with \"version\" and \"orders\", not {}",
                type_name(value)
            ),
        );
        return None;
    };
    let top = Fields::new(map, file.clone(), TOP_FIELDS, p);
    let version = match top.get("version", true, p) {
        Some(v) if v.as_u64() == Some(FORMAT_VERSION) => Some(FORMAT_VERSION),
        Some(v) => {
            p.error(
                &file,
                "version".to_string(),
                show(v),
                format!("unsupported version; this build reads version {FORMAT_VERSION}"),
            );
            None
        }
        None => None,
    };
    let orders = match top.get("orders", true, p) {
        Some(Value::Array(items)) => {
            let mut clean = Some(Vec::with_capacity(items.len()));
            for (i, v) in items.iter().enumerate() {
                match read_order(i, v, p) {
                    Ok(order) => {
                        partial.orders.push((i, order.clone(), None));
                        if let Some(c) = &mut clean {
                            c.push(order);
                        }
                    }
                    Err(best_effort) => {
                        partial
                            .orders
                            .extend(best_effort.map(|b| (i, b.order, Some(b.positions))));
                        clean = None;
                    }
                }
            }
            clean
        }
        Some(v) => {
            top.wrong_type("orders", v, "an array of orders", p);
            None
        }
        None => None,
    };
    let exceptions = match top.get("exceptions", false, p) {
        Some(Value::Array(items)) => {
            let parsed: Vec<Option<Exception>> = items
                .iter()
                .enumerate()
                .map(|(i, v)| read_exception(i, v, p))
                .collect();
            partial.exceptions = parsed
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((i, e.clone()?)))
                .collect();
            parsed.into_iter().collect::<Option<Vec<_>>>()
        }
        Some(v) => {
            top.wrong_type("exceptions", v, "an array of exceptions", p);
            None
        }
        None => Some(Vec::new()),
    };
    Some(OrderList {
        version: version?,
        orders: orders?,
        exceptions: exceptions?,
    })
}

/// Reads one order. On error, returns what could be read (when at least the id could),
/// with the position in the file of each prefix kept, so that the policy checks can
/// still look at its prefixes.
pub fn read_order(
    index: usize,
    value: &Value,
    p: &mut Problems,
) -> Result<Order, Option<Box<PartlyRead>>> {
    let errors_before = p.errors().count();
    let Some(map) = value.as_object() else {
        p.error(
            &Place::Order { index, id: None },
            None,
            show(value),
            format!("an order must be an object, not {}", type_name(value)),
        );
        return Err(None);
    };
    // The id names the order in every other message, so it is read first; one too long
    // to be valid does not (it would be copied into each of them).
    let id = match map.get("id") {
        Some(Value::String(s)) if s.chars().count() <= MAX_ID_CHARS => Some(s.clone()),
        _ => None,
    };
    let place = Place::Order {
        index,
        id: id.clone(),
    };
    let f = Fields::new(map, place.clone(), ORDER_FIELDS, p);
    let id = match f.get("id", true, p) {
        Some(v @ Value::String(s)) => {
            let chars = s.chars().count();
            if chars == 0 || chars > MAX_ID_CHARS {
                p.error(
                    &place,
                    "id".to_string(),
                    show(v),
                    format!("must be 1 to {MAX_ID_CHARS} characters, not {chars}"),
                );
                None
            } else if s.chars().any(|c| c.is_control()) {
                p.error(
                    &place,
                    "id".to_string(),
                    show(v),
                    "must be printable characters (no control characters)",
                );
                None
            } else {
                Some(s.clone())
            }
        }
        Some(v) => {
            f.wrong_type("id", v, "a string", p);
            None
        }
        None => None,
    };
    let authority = f.string("authority", true, p);
    let issued = f.parsed("issued", true, p, parse_date);
    let valid_from = f.parsed("valid_from", false, p, Instant::parse);
    let expires = f.parsed("expires", false, p, Instant::parse);
    let basis = f.string("basis", false, p);
    let action = f.one_of(
        "action",
        true,
        &["drop", "redirect", "monitor"],
        p,
        Action::parse,
    );
    let direction = f.one_of(
        "direction",
        false,
        &["dst", "src", "both"],
        p,
        Direction::parse,
    );
    let allow_broad = f.boolean("allow_broad", p);
    let allow_shared = f.boolean("allow_shared", p);
    let note = f.string("note", false, p);
    let domains = match f.get("domains", false, p) {
        Some(v) => super::domain::read_domains(v, &place, p),
        None => Some(Vec::new()),
    };
    let names_listed = matches!(map.get("domains"), Some(Value::Array(a)) if !a.is_empty());
    let mut positions = Vec::new();
    let prefixes = match f.get("prefixes", !names_listed, p) {
        None if names_listed => Some(Vec::new()),
        Some(Value::Array(items)) if items.is_empty() && names_listed => Some(Vec::new()),
        Some(Value::Array(items)) if items.is_empty() => {
            p.error(
                &place,
                "prefixes".to_string(),
                "[]".to_string(),
                "an order needs at least one prefix (or a name in \"domains\")",
            );
            None
        }
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = format!("prefixes[{i}]");
                match item {
                    Value::String(text) => match text.parse::<Prefix>() {
                        Ok(value) => {
                            out.push(Listed {
                                text: text.clone(),
                                value,
                            });
                            positions.push(i);
                        }
                        Err(e) => p.error(&place, field, show(item), prefix_problem(&e)),
                    },
                    other => p.error(
                        &place,
                        field,
                        show(other),
                        format!(
                            "must be a string like \"198.51.100.0/24\", not {}",
                            type_name(other)
                        ),
                    ),
                }
            }
            Some(out)
        }
        Some(v) => {
            f.wrong_type("prefixes", v, "an array of prefixes", p);
            None
        }
        None => None,
    };
    if let (Some(from), Some(until)) = (&valid_from, &expires) {
        if until.value.end() <= from.value.start() {
            p.error(
                &place,
                "expires".to_string(),
                show(&Value::String(until.text.clone())),
                format!("ends before valid_from {} begins", cut(&from.text)),
            );
        }
    }
    let clean = p.errors().count() == errors_before;
    let (Some(id), Some(prefixes)) = (id, prefixes) else {
        return Err(None);
    };
    let clean = clean && domains.is_some();
    let order = Order {
        id,
        // Placeholders stand in for fields that failed: only a clean order is ever used
        // for anything but reporting.
        authority: authority.unwrap_or_default(),
        issued: issued.unwrap_or(Listed {
            text: String::new(),
            value: time::Date::MIN,
        }),
        valid_from,
        expires,
        basis,
        action: action.unwrap_or(Action::Drop),
        direction,
        prefixes,
        domains: domains.unwrap_or_default(),
        allow_broad,
        allow_shared,
        note,
    };
    if clean {
        Ok(order)
    } else {
        Err(Some(Box::new(PartlyRead { order, positions })))
    }
}

fn read_exception(index: usize, value: &Value, p: &mut Problems) -> Option<Exception> {
    let place = Place::Exception { index };
    let Some(map) = value.as_object() else {
        p.error(
            &place,
            None,
            show(value),
            format!(
                "an exception must be an object with \"prefix\" and \"reason\", not {}",
                type_name(value)
            ),
        );
        return None;
    };
    let f = Fields::new(map, place.clone(), EXCEPTION_FIELDS, p);
    let prefix = f.parsed("prefix", true, p, |t| {
        t.parse::<Prefix>().map_err(|e| prefix_problem(&e))
    });
    let reason = f.string("reason", true, p);
    Some(Exception {
        prefix: prefix?,
        reason: reason?,
    })
}
