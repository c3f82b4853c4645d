//! The `sales_records*` target, field for field as the schema document
//! (`sales-analytics-schema.md`, section 4) describes it.

use super::profile::{ApplyMode, FieldKind, FieldSpec, IndexSpec, TargetProfile};
use super::values::EnumSpec;

pub const STAGES: EnumSpec = EnumSpec {
    values: &[
        "F Inbox",
        "D POA Booked",
        "C Proposal sent",
        "B Legals",
        "A Closed",
        "Lost",
        "Not Relevant",
    ],
    aliases: &[
        ("intro", "F Inbox"),
        ("poa", "D POA Booked"),
        ("proposal", "C Proposal sent"),
        ("legal", "B Legals"),
        ("closed won", "A Closed"),
        ("won", "A Closed"),
        ("closed lost", "Lost"),
        ("not relevant", "Not Relevant"),
        ("irrelevant", "Not Relevant"),
    ],
    letter_prefixed: true,
};

pub const SHOW_NOSHOW: EnumSpec = EnumSpec {
    values: &["Show", "Noshow"],
    aliases: &[("no show", "Noshow"), ("absent", "Noshow"), ("present", "Show")],
    letter_prefixed: false,
};

pub const SOURCE_TYPES: EnumSpec = EnumSpec {
    values: &[
        "Inbound",
        "Outbound",
        "Referral",
        "Internal referral",
        "External referral",
        "Client referral",
        "Event",
        "None/Non-assigned",
        "Upsell/Cross-sell",
    ],
    aliases: &[
        ("none", "None/Non-assigned"),
        ("non assigned", "None/Non-assigned"),
        ("unassigned", "None/Non-assigned"),
        ("upsell", "Upsell/Cross-sell"),
        ("cross sell", "Upsell/Cross-sell"),
        ("upsell cross", "Upsell/Cross-sell"),
    ],
    letter_prefixed: false,
};

const fn field(name: &'static str, kind: FieldKind, aliases: &'static [&'static str]) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        aliases,
        required: false,
    }
}

pub const SALES_RECORDS: TargetProfile = TargetProfile {
    name: "sales_records",
    fields: &[
        field(
            "month",
            FieldKind::Month {
                derive_from: Some("discovery_date"),
            },
            &["mois"],
        ),
        field(
            "discovery_date",
            FieldKind::Date,
            &["date de decouverte", "discovery", "date discovery", "decouverte"],
        ),
        FieldSpec {
            name: "client",
            kind: FieldKind::Text,
            aliases: &["company", "client name", "societe", "account", "entreprise"],
            required: true,
        },
        field(
            "hubspot_link",
            FieldKind::Text,
            &["hubspot", "lien hubspot", "hubspot url", "deal link"],
        ),
        FieldSpec {
            name: "stage",
            kind: FieldKind::Enum(&STAGES),
            aliases: &["deal stage", "etape", "statut", "status"],
            required: true,
        },
        field("relevance", FieldKind::Text, &["pertinence"]),
        field(
            "show_noshow",
            FieldKind::Enum(&SHOW_NOSHOW),
            &["show no show", "show", "noshow"],
        ),
        field("poa_date", FieldKind::Date, &["date poa", "poa"]),
        field("expected_mrr", FieldKind::Number, &["mrr", "mrr attendu"]),
        field("expected_arr", FieldKind::Number, &["arr", "arr attendu"]),
        field("pipeline", FieldKind::Number, &["pipe", "pipeline value"]),
        field(
            "type_of_deal",
            FieldKind::Text,
            &["deal type", "type de deal", "type d affaire"],
        ),
        field("bdr", FieldKind::Text, &["business developer"]),
        field(
            "type_of_source",
            FieldKind::Enum(&SOURCE_TYPES),
            &["source", "source type", "type de source", "lead source"],
        ),
        field("product", FieldKind::Text, &["produit", "offer", "offre"]),
        field(
            "owner",
            FieldKind::Text,
            &["owner ae", "ae", "account executive", "proprietaire"],
        ),
        field("supporters", FieldKind::Text, &["support", "supporter"]),
        field(
            "billing_start",
            FieldKind::Date,
            &["billing start date", "debut facturation", "date de facturation"],
        ),
    ],
    key: &["client", "stage"],
    identity_link: Some("hubspot_link"),
    apply: ApplyMode::ReplaceCollection,
    indexes: &[
        IndexSpec {
            keys: &["id"],
            unique: true,
            expire_after_seconds: None,
        },
        IndexSpec {
            keys: &["client"],
            unique: false,
            expire_after_seconds: None,
        },
        IndexSpec {
            keys: &["stage"],
            unique: false,
            expire_after_seconds: None,
        },
        IndexSpec {
            keys: &["discovery_date"],
            unique: false,
            expire_after_seconds: None,
        },
        IndexSpec {
            keys: &["owner"],
            unique: false,
            expire_after_seconds: None,
        },
        IndexSpec {
            keys: &["type_of_source"],
            unique: false,
            expire_after_seconds: None,
        },
        IndexSpec {
            keys: &["show_noshow"],
            unique: false,
            expire_after_seconds: None,
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(STAGES.canonical(text), expected, "stage {text:?}");
        }
    }

    #[test]
    fn show_and_source_spellings() {
        assert_eq!(SHOW_NOSHOW.canonical("No Show"), Some("Noshow"));
        assert_eq!(SHOW_NOSHOW.canonical("no-show"), Some("Noshow"));
        assert_eq!(SHOW_NOSHOW.canonical("SHOW"), Some("Show"));
        assert_eq!(SOURCE_TYPES.canonical("upsell / cross-sell"), Some("Upsell/Cross-sell"));
        assert_eq!(SOURCE_TYPES.canonical("client referral"), Some("Client referral"));
        assert_eq!(SOURCE_TYPES.canonical("none / non-assigned"), Some("None/Non-assigned"));
        assert_eq!(SOURCE_TYPES.canonical("Webinar"), None);
    }

    #[test]
    fn every_key_field_exists_and_is_required() {
        for key in SALES_RECORDS.key {
            let spec = SALES_RECORDS.field(key).expect("key field is declared");
            assert!(spec.required, "{key} must be required to be a key");
        }
    }
}
