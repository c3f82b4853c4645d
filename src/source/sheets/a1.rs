//! A1 notation, just the parts sheetsync needs: a whole tab as a range, and
//! the tab and first row of a range Google sends back.

/// The A1 range covering a whole tab. The title is always quoted, with
/// embedded quotes doubled (`It's Q1` -> `'It''s Q1'`), which is valid for
/// every title, including ones that look like cell references (`A1`, `R1C1`).
pub fn whole_tab(title: &str) -> String {
    format!("'{}'", title.replace('\'', "''"))
}

/// One page of a tab: its A1 range and the sheet row it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub range: String,
    pub first_row: usize,
}

/// The pages that read a tab of `rows` rows (its grid height) in pages of
/// `page_rows`: the whole tab in one range when it fits one page or its
/// height is unknown, else `'Tab'!1:20000`, `'Tab'!20001:40000`, ... with
/// the last page ending at the grid's last row (a range past the grid is an
/// error at Google).
pub fn pages(title: &str, rows: Option<usize>, page_rows: usize) -> Vec<Page> {
    let page_rows = page_rows.max(1);
    match rows {
        Some(rows) if rows > page_rows => (0..rows.div_ceil(page_rows))
            .map(|page| {
                let first = page * page_rows + 1;
                let last = ((page + 1) * page_rows).min(rows);
                Page {
                    range: format!("{}!{first}:{last}", whole_tab(title)),
                    first_row: first,
                }
            })
            .collect(),
        _ => vec![Page {
            range: whole_tab(title),
            first_row: 1,
        }],
    }
}

/// The tab title and first row number of a range such as `'It''s Q1'!A1:F20`,
/// `Sheet1!A3:C9` or `Sheet1`. A range without a row (`Sheet1!A:F`) starts at
/// row 1.
pub fn split_range(range: &str) -> (String, usize) {
    let (title, cells) = if let Some(quoted) = range.strip_prefix('\'') {
        let mut title = String::new();
        let mut chars = quoted.char_indices().peekable();
        let mut rest = "";
        while let Some((index, c)) = chars.next() {
            if c == '\'' {
                if matches!(chars.peek(), Some((_, '\''))) {
                    chars.next();
                    title.push('\'');
                    continue;
                }
                rest = &quoted[index + 1..];
                break;
            }
            title.push(c);
        }
        (title, rest.strip_prefix('!').unwrap_or(""))
    } else {
        match range.split_once('!') {
            Some((title, cells)) => (title.to_owned(), cells),
            None => (range.to_owned(), ""),
        }
    };
    (title, first_row(cells))
}

/// `3` from `A3:C9`; `1` when the range names whole columns or nothing.
fn first_row(cells: &str) -> usize {
    let start = cells.split(':').next().unwrap_or("");
    let digits: String = start
        .trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == '$')
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|&row| row >= 1).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_grid_exactly() {
        let ranges = |rows, page_rows| -> Vec<(String, usize)> {
            pages("It's", rows, page_rows)
                .into_iter()
                .map(|page| (page.range, page.first_row))
                .collect()
        };
        assert_eq!(ranges(Some(5), 10), [("'It''s'".to_owned(), 1)]);
        assert_eq!(ranges(None, 10), [("'It''s'".to_owned(), 1)]);
        assert_eq!(
            ranges(Some(25), 10),
            [
                ("'It''s'!1:10".to_owned(), 1),
                ("'It''s'!11:20".to_owned(), 11),
                ("'It''s'!21:25".to_owned(), 21)
            ]
        );
        assert_eq!(split_range("'It''s'!A21:R25"), ("It's".to_owned(), 21));
    }

    #[test]
    fn quotes_every_title_safely() {
        assert_eq!(whole_tab("Sheet1"), "'Sheet1'");
        assert_eq!(whole_tab("Q1 pipeline"), "'Q1 pipeline'");
        assert_eq!(whole_tab("It's Q1"), "'It''s Q1'");
        assert_eq!(whole_tab("''"), "''''''");
        assert_eq!(whole_tab("Ventes !"), "'Ventes !'");
    }

    #[test]
    fn splits_ranges_google_returns() {
        let cases = [
            ("'It''s Q1'!A1:F20", ("It's Q1", 1)),
            ("Sheet1!A3:C9", ("Sheet1", 3)),
            ("Sheet1!$B$12:$C$20", ("Sheet1", 12)),
            ("'Ventes !'!A2:B2", ("Ventes !", 2)),
            ("Sheet1!A:F", ("Sheet1", 1)),
            ("Sheet1", ("Sheet1", 1)),
            ("'Q1 pipeline'", ("Q1 pipeline", 1)),
        ];
        for (range, (title, row)) in cases {
            assert_eq!(split_range(range), (title.to_owned(), row), "splitting {range}");
        }
        for title in ["It's Q1", "a'b'c", "Sheet1", "x!y"] {
            assert_eq!(
                split_range(&format!("{}!A7:B8", whole_tab(title))),
                (title.to_owned(), 7)
            );
        }
    }
}
