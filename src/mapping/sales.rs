//! The `sales_records*` target, as built in (`targets/sales_records.toml`).

use std::sync::LazyLock;

use super::declare;
use super::profile::TargetProfile;

/// The built-in sales profile (a config file may replace it; the engine
/// takes the effective one from [`declare::Targets::sales_records`]).
pub static SALES_RECORDS: LazyLock<TargetProfile> =
    LazyLock::new(|| match declare::built_in(declare::SALES_RECORDS_TARGET) {
        Some(profile) => (*profile).clone(),
        // `targets/sales_records.toml` is compiled in and checked by a unit test.
        None => unreachable!("the built-in sales_records profile is always present"),
    });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::profile::FieldKind;
    use crate::mapping::values::EnumSpec;

    fn enum_of(field: &str) -> &'static EnumSpec {
        match &SALES_RECORDS.field(field).unwrap().kind {
            FieldKind::Enum(spec) => spec,
            other => panic!("{field} is {other:?}"),
        }
    }

    #[test]
    fn stage_spellings() {
        let cases = [
            ("B Legals", Some("B Legals")),
            ("legals", Some("B Legals")),
            ("b - legals", Some("B Legals")),
            ("  B.LEGALS ", Some("B Legals")),
            ("d poa booked", Some("D POA Booked")),
            ("Proposal Sent", Some("C Proposal sent")),
            ("closed", Some("A Closed")),
            ("lost", Some("Lost")),
            ("not-relevant", Some("Not Relevant")),
            ("Negotiation", None),
        ];
        for (text, expected) in cases {
            assert_eq!(enum_of("stage").canonical(text), expected, "stage {text:?}");
        }
    }

    #[test]
    fn show_and_source_spellings() {
        let (show, source) = (enum_of("show_noshow"), enum_of("type_of_source"));
        assert_eq!(show.canonical("No Show"), Some("Noshow"));
        assert_eq!(show.canonical("no-show"), Some("Noshow"));
        assert_eq!(show.canonical("SHOW"), Some("Show"));
        assert_eq!(source.canonical("upsell / cross-sell"), Some("Upsell/Cross-sell"));
        assert_eq!(source.canonical("client referral"), Some("Client referral"));
        assert_eq!(source.canonical("none / non-assigned"), Some("None/Non-assigned"));
        assert_eq!(source.canonical("Webinar"), None);
    }
}
