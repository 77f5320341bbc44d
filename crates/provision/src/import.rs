//! Bulk import from CSV (the source's "batch way"): all of a file or none
//! of it.
//!
//! The first line names the columns, in any order and any case: `phone`
//! (required), `name`, `group`, `profile` (`native` when empty), `username`
//! (the next free number when empty). Fields are trimmed; rows whose
//! fields are all empty (what spreadsheets write for blank rows) are
//! skipped. The delimiter is `,`, or `;` or a tab when the header has that
//! and no `,` (what spreadsheets in many locales write). A UTF-8 byte order
//! mark is dropped; CRLF and LF both end lines; quoted fields may hold the
//! delimiter, `""` and line breaks (a line break is then refused by the
//! field's own rule, but the line numbers of later rows stay right).
//!
//! **Hostile input.** At most [`MAX_CSV_BYTES`] and [`MAX_CSV_ROWS`] rows,
//! checked before anything else; every message echoes at most 64
//! characters of a field. Cells starting with `=`, `+`, `-` or `@` (formula
//! injection) are refused in every column but `phone`, where only a valid
//! E.164 number passes, so nothing imported can turn into a formula when
//! exported to a spreadsheet later (see [`FORMULA_PREFIXES`]). Refusing
//! rather than stripping the character or prefixing `'`: the import would
//! otherwise store something the administrator did not write, and a name
//! such as `=cmd|...` is an attack or an accident, never a name.
//!
//! [`FORMULA_PREFIXES`]: crate::account::FORMULA_PREFIXES

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::account::{
    AccountDraft, ClientProfile, Conflict, DisplayName, Group, NewAccount, PhoneNumber, Taken,
    Username,
};

/// The largest file accepted (1 MiB: some 10,000 rows of a few dozen bytes).
pub const MAX_CSV_BYTES: usize = 1024 * 1024;
/// The most account rows a file may have.
pub const MAX_CSV_ROWS: usize = 10_000;
/// The column names, in the order the documentation lists them.
pub const CSV_COLUMNS: [&str; 5] = ["phone", "name", "group", "profile", "username"];

const COLUMNS_HINT: &str =
    "the first line names the columns: phone,name,group,profile,username (only phone is required)";

/// One thing wrong with an import file: where (line and column, when it is
/// about one), a stable code, what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CsvProblem {
    /// Line of the file, 1 being the header; for a row spanning several
    /// lines (a quoted line break), its first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<&'static str>,
    pub code: &'static str,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for CsvProblem {
    /// `line 3, column phone: message` then `  = hint: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            (None, _) => {}
        }
        write!(f, "{}\n  = hint: {}", self.message, self.hint)
    }
}

/// A refused import: every problem found, in file order. Nothing of the
/// file may be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("the CSV file was not imported: {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" })]
pub struct CsvRejected {
    pub problems: Vec<CsvProblem>,
}

impl CsvRejected {
    pub fn code(&self) -> &'static str {
        "csv-rejected"
    }

    pub fn hint(&self) -> &'static str {
        "fix every problem listed and import the whole file again: none of its accounts was created"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Phone,
    Name,
    Group,
    Profile,
    Username,
}

impl Column {
    const ALL: [Column; 5] = [
        Column::Phone,
        Column::Name,
        Column::Group,
        Column::Profile,
        Column::Username,
    ];

    fn name(self) -> &'static str {
        CSV_COLUMNS[self as usize]
    }
}

struct Problems(Vec<CsvProblem>);

impl Problems {
    fn push(
        &mut self,
        line: Option<u64>,
        column: Option<Column>,
        code: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.0.push(CsvProblem {
            line,
            column: column.map(Column::name),
            code,
            message: message.into(),
            hint: hint.into(),
        });
    }

    /// A row that collides with an existing account, as
    /// [`Taken::admit`] reports it.
    fn conflict(&mut self, line: u64, conflict: Conflict) {
        let column = match conflict {
            Conflict::UsernameTaken(_) => Column::Username,
            Conflict::PhoneTaken { .. } => Column::Phone,
        };
        let message = conflict.to_string();
        self.push(
            Some(line),
            Some(column),
            conflict.code(),
            message,
            conflict.hint(),
        );
    }

    fn reject(mut self) -> CsvRejected {
        self.0.sort_by_key(|p| p.line);
        CsvRejected { problems: self.0 }
    }
}

/// The accounts a CSV file asks for, checked against each other and
/// against `taken` (the accounts that exist), each with its user name
/// (generated where the file has none, after every name the file gives is
/// reserved): either all of them, in file order, or every problem.
pub fn import_csv(bytes: &[u8], taken: &Taken) -> Result<Vec<AccountDraft>, CsvRejected> {
    let mut problems = Problems(Vec::new());
    let file_problem = |code, message: String, hint: &str| {
        let mut p = Problems(Vec::new());
        p.push(None, None, code, message, hint);
        p.reject()
    };
    if bytes.len() > MAX_CSV_BYTES {
        return Err(file_problem(
            "csv-oversize",
            format!(
                "the file is {} bytes; at most {MAX_CSV_BYTES} bytes (1 MiB) are accepted",
                bytes.len()
            ),
            "split it into files of at most 10,000 rows",
        ));
    }
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(file_problem(
            "csv-not-utf8",
            "the file is UTF-16 text".into(),
            "save it as \"CSV UTF-8\"",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(file_problem(
            "csv-empty",
            "the file is empty".into(),
            COLUMNS_HINT,
        ));
    }
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let delimiter = if first_line.contains(&b',') {
        b','
    } else if first_line.contains(&b';') {
        b';'
    } else if first_line.contains(&b'\t') {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes);
    let lines = Lines::new(bytes);
    let mut records = reader.byte_records();

    // The header.
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            return Err(file_problem(
                "csv-malformed",
                format!("the header cannot be read: {e}"),
                COLUMNS_HINT,
            ));
        }
        None => {
            return Err(file_problem(
                "csv-empty",
                "the file is empty".into(),
                COLUMNS_HINT,
            ));
        }
    };
    let header_line = lines.of(header.position());
    let mut columns: Vec<Column> = Vec::with_capacity(header.len());
    for (i, field) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(field).trim().to_ascii_lowercase();
        match Column::ALL.into_iter().find(|c| c.name() == name) {
            Some(c) if columns.contains(&c) => problems.push(
                header_line,
                None,
                "csv-duplicate-column",
                format!("the column {name} is named twice"),
                "keep one column of each name",
            ),
            Some(c) => columns.push(c),
            None if i == 0 && name.parse::<PhoneNumber>().is_ok() => {
                return Err(file_problem(
                    "csv-no-header",
                    "the first line is an account, not the names of the columns".into(),
                    &format!(
                        "add a first line such as phone,name,group,profile,username; {COLUMNS_HINT}"
                    ),
                ));
            }
            None => problems.push(
                header_line,
                None,
                "csv-unknown-column",
                if name.is_empty() {
                    format!("column {} has no name", i + 1)
                } else {
                    format!("unknown column {:?}", crate::text::echo(&name))
                },
                COLUMNS_HINT,
            ),
        }
    }
    if !columns.contains(&Column::Phone) && problems.0.is_empty() {
        problems.push(
            header_line,
            None,
            "csv-missing-column",
            "there is no phone column",
            COLUMNS_HINT,
        );
    }
    if !problems.0.is_empty() {
        return Err(problems.reject());
    }

    // The rows.
    let mut rows: Vec<(u64, NewAccount)> = Vec::new();
    let mut count = 0usize;
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = lines.of(e.position());
                problems.push(
                    line,
                    None,
                    "csv-malformed",
                    format!("the file cannot be read further: {e}"),
                    "check the quoting of this row",
                );
                break;
            }
        };
        let line = lines.of(record.position());
        if record.iter().all(|f| f.trim_ascii().is_empty()) {
            continue;
        }
        count += 1;
        if count > MAX_CSV_ROWS {
            problems.push(
                line,
                None,
                "csv-too-many-rows",
                format!("the file has more than {MAX_CSV_ROWS} account rows"),
                "split it into files of at most 10,000 rows",
            );
            break;
        }
        if record.len() != columns.len() {
            problems.push(
                line,
                None,
                "csv-field-count",
                format!("the row has {} fields; the header names {}", record.len(), columns.len()),
                "give every row one field per column, empty where there is nothing to say; quote fields that contain the delimiter",
            );
            continue;
        }
        if let Some(new) = row(&columns, &record, line, &mut problems) {
            rows.push((line.unwrap_or_default(), new));
        }
    }
    if rows.is_empty() && problems.0.is_empty() {
        problems.push(
            None,
            None,
            "csv-empty",
            "the file has no account rows",
            COLUMNS_HINT,
        );
    }

    // Unique within the file and against what exists.
    let mut usernames: BTreeMap<&Username, u64> = BTreeMap::new();
    let mut phones: BTreeMap<&PhoneNumber, u64> = BTreeMap::new();
    for (line, new) in &rows {
        let line = *line;
        if let Some(u) = &new.username {
            if taken.has_username(u) {
                problems.conflict(line, Conflict::UsernameTaken(u.clone()));
            } else if let Some(first) = usernames.get(u) {
                problems.push(
                    Some(line),
                    Some(Column::Username),
                    "csv-duplicate-username",
                    format!("the username {u} is also on line {first}"),
                    "give each row its own username, or leave it empty",
                );
            } else {
                usernames.insert(u, line);
            }
        }
        if let Some(owner) = taken.phone_owner(&new.phone) {
            problems.conflict(
                line,
                Conflict::PhoneTaken {
                    phone: new.phone.clone(),
                    owner: owner.clone(),
                },
            );
        } else if let Some(first) = phones.get(&new.phone) {
            problems.push(
                Some(line),
                Some(Column::Phone),
                "csv-duplicate-phone",
                format!("the phone number {} is also on line {first}", new.phone),
                "one phone number is one account: remove one of the rows",
            );
        } else {
            phones.insert(&new.phone, line);
        }
    }
    if !problems.0.is_empty() {
        return Err(problems.reject());
    }

    // Names: the file's own first, then the generated ones.
    let mut taken = taken.clone();
    for (_, new) in &rows {
        if let Some(u) = &new.username {
            taken.insert(u.clone(), new.phone.clone());
        }
    }
    Ok(rows
        .into_iter()
        .map(|(_, new)| match new.username.clone() {
            Some(u) => new.named(u),
            // Its phone is free: checked above against `taken` and every row.
            None => taken
                .admit(new)
                .expect("a row without conflicts is admitted"),
        })
        .collect())
}

/// Where the lines of the file start, to turn a record's position into
/// the line an editor shows. The `csv` crate's own line counter does not
/// count the blank lines it skips, and a record's position is where the
/// reader stood before them: skip them here, then count.
struct Lines<'a> {
    bytes: &'a [u8],
    newlines: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let newlines = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Lines { bytes, newlines }
    }

    fn of(&self, position: Option<&csv::Position>) -> Option<u64> {
        let start = usize::try_from(position?.byte()).ok()?;
        let start = start
            + self.bytes[start.min(self.bytes.len())..]
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
        Some(self.newlines.partition_point(|&nl| nl < start) as u64 + 1)
    }
}

/// One row as a [`NewAccount`], or its problems pushed.
fn row(
    columns: &[Column],
    record: &csv::ByteRecord,
    line: Option<u64>,
    problems: &mut Problems,
) -> Option<NewAccount> {
    let before = problems.0.len();
    let mut phone = None;
    let mut display_name = None;
    let mut group = None;
    let mut profile = ClientProfile::Native;
    let mut username = None;
    for (&column, raw) in columns.iter().zip(record.iter()) {
        let Ok(text) = std::str::from_utf8(raw) else {
            problems.push(
                line,
                Some(column),
                "csv-not-utf8",
                "the field is not UTF-8 text",
                "save the file as \"CSV UTF-8\"",
            );
            continue;
        };
        let value = text.trim();
        macro_rules! parse {
            ($ty:ty) => {
                match value.parse::<$ty>() {
                    Ok(v) => Some(v),
                    Err(e) => {
                        problems.push(line, Some(column), e.code(), e.to_string(), e.hint());
                        None
                    }
                }
            };
        }
        match column {
            Column::Phone if value.is_empty() => problems.push(
                line,
                Some(column),
                "csv-missing-phone",
                "the row has no phone number",
                "give every account its phone number in international form, e.g. +41 44 668 18 00",
            ),
            Column::Phone => phone = parse!(PhoneNumber),
            _ if value.is_empty() => {}
            Column::Name => display_name = parse!(DisplayName),
            Column::Group => group = parse!(Group),
            Column::Profile => profile = parse!(ClientProfile).unwrap_or_default(),
            Column::Username => username = parse!(Username),
        }
    }
    if problems.0.len() > before {
        return None;
    }
    Some(NewAccount {
        username,
        display_name,
        phone: phone.expect("the phone column exists and had no problem"),
        group,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tests::Noise;

    fn import(csv: &str) -> Result<Vec<AccountDraft>, CsvRejected> {
        import_csv(csv.as_bytes(), &Taken::default())
    }

    fn ok(csv: &str) -> Vec<String> {
        import(csv)
            .expect("imports")
            .iter()
            .map(|d| {
                format!(
                    "{} {} {:?} {:?} {}",
                    d.username,
                    d.phone,
                    d.display_name.as_ref().map(DisplayName::as_str),
                    d.group.as_ref().map(Group::as_str),
                    d.profile
                )
            })
            .collect()
    }

    /// `(line, column, code)` of each problem.
    fn problems(
        csv: &[u8],
        taken: &Taken,
    ) -> Vec<(Option<u64>, Option<&'static str>, &'static str)> {
        import_csv(csv, taken)
            .expect_err("refused")
            .problems
            .iter()
            .map(|p| (p.line, p.column, p.code))
            .collect()
    }

    fn bad(csv: &str) -> Vec<(Option<u64>, Option<&'static str>, &'static str)> {
        problems(csv.as_bytes(), &Taken::default())
    }

    #[test]
    fn a_good_file_gives_every_account_with_generated_names_after_the_given_ones() {
        let csv = "phone,name,group,profile,username\n\
                   +41 44 668 18 00,Alice,Sales,linphone,\n\
                   +41446681801,,,,1000\n\
                   \"+1 (555) 010-0199\",\"Müller, Hans\",,Native,hans\n\
                   +41446681802,Bob,,,\n";
        assert_eq!(
            ok(csv),
            [
                "1001 +41446681800 Some(\"Alice\") Some(\"sales\") linphone",
                "1000 +41446681801 None None native",
                "hans +15550100199 Some(\"Müller, Hans\") None native",
                "1002 +41446681802 Some(\"Bob\") None native",
            ]
        );
    }

    #[test]
    fn columns_come_in_any_order_and_case_and_only_phone_is_required() {
        assert_eq!(
            ok("Username ; PHONE\r\nalice;+41446681800\r\n"),
            ["alice +41446681800 None None native"]
        );
        assert_eq!(
            ok("phone\n+41446681800"),
            ["1000 +41446681800 None None native"]
        );
        assert_eq!(
            ok("\u{feff}phone\tname\n+41446681800\tAlice\n"),
            ["1000 +41446681800 Some(\"Alice\") None native"]
        );
    }

    #[test]
    fn blank_rows_are_skipped_and_crlf_and_quoted_fields_keep_line_numbers_right() {
        let csv = "phone,name\r\n,\r\n\r\n+41446681800,\"Alice \"\"Al\"\" Smith\"\r\n+41446681801,\"two\r\nlines\"\r\n+41446681802,=1+1\r\n";
        assert_eq!(
            bad(csv),
            [
                (Some(5), Some("name"), "invalid-display-name"),
                (Some(7), Some("name"), "invalid-display-name"),
            ]
        );
        let leading_blank_lines =
            "\n\r\nphone,name\n\n\n+41446681800,@x\n\n+41446681801,\"a\nb\"\n";
        assert_eq!(
            bad(leading_blank_lines),
            [
                (Some(6), Some("name"), "invalid-display-name"),
                (Some(8), Some("name"), "invalid-display-name"),
            ]
        );
        assert_eq!(
            bad("\n\nname\nx\n"),
            [(Some(3), None, "csv-missing-column")]
        );
        assert_eq!(
            ok("phone,name\n+41446681800,\"Alice \"\"Al\"\" Smith\"\n"),
            ["1000 +41446681800 Some(\"Alice \\\"Al\\\" Smith\") None native"]
        );
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_column() {
        let csv = "phone,name,group,profile,username\n\
                   +41446681800,Alice,,,\n\
                   0041446681801,,,,\n\
                   ,Nobody,,,\n\
                   +41446681802,,a b,sip,-x\n\
                   +41446681803,too,many,fields,here,really\n\
                   +41446681804,Eve\n";
        assert_eq!(
            bad(csv),
            [
                (Some(3), Some("phone"), "invalid-phone-number"),
                (Some(4), Some("phone"), "csv-missing-phone"),
                (Some(5), Some("group"), "invalid-group"),
                (Some(5), Some("profile"), "unknown-client-profile"),
                (Some(5), Some("username"), "invalid-username"),
                (Some(6), None, "csv-field-count"),
                (Some(7), None, "csv-field-count"),
            ]
        );
        let err = import(csv).expect_err("refused");
        assert_eq!(err.to_string(), "the CSV file was not imported: 7 problems");
        assert_eq!(err.code(), "csv-rejected");
        assert_eq!(
            err.problems[0].to_string(),
            "line 3, column phone: invalid phone number \"0041446681801\": it starts with 00 instead of +\n  = hint: replace the leading 00 with +, e.g. 0041 44 668 18 00 is +41 44 668 18 00"
        );
        let json = serde_json::to_value(&err.problems[5]).expect("json");
        assert_eq!(json["line"], 6);
        assert!(json.get("column").is_none());
    }

    #[test]
    fn duplicates_within_the_file_and_against_existing_accounts_are_refused() {
        let mut taken = Taken::default();
        taken.insert(
            "1000".parse().expect("user"),
            "+41446681800".parse().expect("phone"),
        );
        taken.insert(
            "carol".parse().expect("user"),
            "+41446681899".parse().expect("phone"),
        );
        let csv = "phone,username\n\
                   +41 44 668 18 00,\n\
                   +41446681801,Carol\n\
                   +41446681802,dave\n\
                   +41446681803,DAVE\n\
                   +41446681802,\n";
        assert_eq!(
            problems(csv.as_bytes(), &taken),
            [
                (Some(2), Some("phone"), "phone-taken"),
                (Some(3), Some("username"), "username-taken"),
                (Some(5), Some("username"), "csv-duplicate-username"),
                (Some(6), Some("phone"), "csv-duplicate-phone"),
            ]
        );
        let err = import_csv(csv.as_bytes(), &taken).expect_err("refused");
        assert_eq!(
            err.problems[2].message,
            "the username dave is also on line 4"
        );
        let drafts = import_csv(
            b"phone,username\n+41446681801,\n+41446681802,1001\n",
            &taken,
        )
        .expect("imports");
        let names: Vec<&str> = drafts.iter().map(|d| d.username.as_str()).collect();
        assert_eq!(
            names,
            ["1002", "1001"],
            "a name the file gives is never generated"
        );
    }

    #[test]
    fn formula_injection_prefixes_are_refused_outside_valid_phone_numbers() {
        let csv = "phone,name,group,username\n\
                   +41446681800,=HYPERLINK(\"http://evil\"),,\n\
                   +41446681801,@SUM(A1),,\n\
                   +41446681802,-2+3,,\n\
                   +41446681803,+cmd|' /C calc'!A0,,\n\
                   +41446681804,Alice,=1+1,\n\
                   +41446681805,Alice,,-1+1\n\
                   =1+1,Alice,,\n\
                   +41446681807,\"\tTab\",,\n\
                   +41446681808,\"\rReturn\",,\n";
        assert_eq!(
            bad(csv),
            [
                (Some(2), Some("name"), "invalid-display-name"),
                (Some(3), Some("name"), "invalid-display-name"),
                (Some(4), Some("name"), "invalid-display-name"),
                (Some(5), Some("name"), "invalid-display-name"),
                (Some(6), Some("group"), "invalid-group"),
                (Some(7), Some("username"), "invalid-username"),
                (Some(8), Some("phone"), "invalid-phone-number"),
            ]
        );
        // A leading tab or carriage return (the other formula triggers) is
        // white space: trimmed, never kept.
        assert_eq!(
            ok("phone,name\n+41446681800,\"\tTab\"\n+41446681801,\"\rReturn\"\n"),
            [
                "1000 +41446681800 Some(\"Tab\") None native",
                "1001 +41446681801 Some(\"Return\") None native",
            ]
        );
    }

    #[test]
    fn header_problems_stop_the_import_before_any_row() {
        assert_eq!(
            bad("name,group\nAlice,sales\n"),
            [(Some(1), None, "csv-missing-column")]
        );
        assert_eq!(
            bad("phone,mail,phone,\n+41446681800,a@b,,\n"),
            [
                (Some(1), None, "csv-unknown-column"),
                (Some(1), None, "csv-duplicate-column"),
                (Some(1), None, "csv-unknown-column"),
            ]
        );
        assert_eq!(bad("+41446681800,Alice\n"), [(None, None, "csv-no-header")]);
        assert_eq!(bad(""), [(None, None, "csv-empty")]);
        assert_eq!(bad("\u{feff}\r\n"), [(None, None, "csv-empty")]);
        assert_eq!(bad("phone,name\n,\n"), [(None, None, "csv-empty")]);
        let long_name = format!("{},phone\n", "x".repeat(100_000));
        let err = import(&long_name).expect_err("refused");
        assert!(
            err.problems[0].message.len() < 100,
            "{}",
            err.problems[0].message
        );
    }

    #[test]
    fn files_that_are_not_utf8_are_refused_with_the_fix() {
        assert_eq!(
            problems(b"\xff\xfep\x00h\x00", &Taken::default()),
            [(None, None, "csv-not-utf8")]
        );
        assert_eq!(
            problems(b"phone,name\n+41446681800,M\xfcller\n", &Taken::default()),
            [(Some(2), Some("name"), "csv-not-utf8")]
        );
    }

    #[test]
    fn the_limits_are_one_mebibyte_and_ten_thousand_rows() {
        let big = vec![b'a'; MAX_CSV_BYTES + 1];
        assert_eq!(
            problems(&big, &Taken::default()),
            [(None, None, "csv-oversize")]
        );

        let mut csv = String::from("phone\n");
        for i in 0..MAX_CSV_ROWS {
            csv.push_str(&format!("+4144{i:07}\n"));
        }
        assert!(csv.len() <= MAX_CSV_BYTES);
        let drafts = import(&csv).expect("10,000 rows are fine");
        assert_eq!(drafts.len(), MAX_CSV_ROWS);
        assert_eq!(drafts[MAX_CSV_ROWS - 1].username.as_str(), "10999");
        csv.push_str("+41449999999\n");
        assert_eq!(bad(&csv), [(Some(10_002), None, "csv-too-many-rows")]);
    }

    #[test]
    fn a_very_long_field_is_refused_without_being_echoed_whole() {
        let csv = format!("phone,name\n+41446681800,{}\n", "n".repeat(900_000));
        let err = import(&csv).expect_err("refused");
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].message.len() < 200);
    }

    #[test]
    fn unbalanced_quotes_do_not_smuggle_rows_in() {
        // An opening quote never closed swallows the rest of the file into
        // one field, which then fails its own rule: nothing is imported.
        let csv = "phone,name\n+41446681800,\"Alice\n+41446681801,Bob\n";
        assert_eq!(bad(csv), [(Some(2), Some("name"), "invalid-display-name")]);
        // A quote inside an unquoted field is kept as a character.
        assert_eq!(
            ok("phone,name\n+41446681800,Al\"ice\n"),
            ["1000 +41446681800 Some(\"Al\\\"ice\") None native"]
        );
    }

    #[test]
    fn random_files_never_panic_and_never_half_import() {
        let mut noise = Noise::new(3);
        for _ in 0..3_000 {
            let mut file = b"phone,name,group,profile,username\n".to_vec();
            file.extend(noise.bytes(300));
            if let Ok(drafts) = import_csv(&file, &Taken::default()) {
                let mut names: Vec<&Username> = drafts.iter().map(|d| &d.username).collect();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), drafts.len(), "unique names");
            }
            let _ = import_csv(&noise.bytes(200), &Taken::default());
        }
    }
}
