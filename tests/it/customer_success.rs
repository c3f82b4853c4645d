//! The customer-success platform as a second target: its `customers`
//! collection, shared with the app, merged from the CS team's export.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::harness::process::Sheetsync;
use crate::harness::{FIXTURES, server_url, test_db};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use sheetsync::config::Config;
use sheetsync::engine::{Engine, SyncOptions};
use sheetsync::report::WriteMode;
use sheetsync::report::{Outcome, SyncReport, Trigger};

/// Write commands sent to `customers`: (command, statements, first statement).
type Writes = Arc<Mutex<Vec<(String, usize, Document)>>>;

/// A config whose one `[[syncs]]` entry merges `source` into
/// `<cs_db>.customers`, written to a file as an operator would.
fn cs_config(dir: &Path, url: &str, sales_db: &str, cs_db: &str, source: &str, extra: &str) -> Config {
    let text = format!(
        "[[syncs]]\nname = \"Customers\"\nsource = \"{source}\"\ntarget = \"customers\"\ndatabase = \"{cs_db}\"\n{extra}"
    );
    let path = dir.join("sheetsync.toml");
    std::fs::write(&path, &text).unwrap();
    Config::resolve(Some((&text, &path)), |name| match name {
        "MONGO_URL" => Some(url.to_owned()),
        "DB_NAME" => Some(sales_db.to_owned()),
        "SHEETSYNC_FILE_ROOTS" => Some("/".to_owned()),
        _ => None,
    })
    .expect("the test config is valid")
}

/// A engine whose client records every write command sent to `customers`.
async fn monitored_engine(config: Config) -> (Engine, Writes) {
    let writes: Writes = Arc::default();
    let seen = Arc::clone(&writes);
    let mut options = ClientOptions::parse(&config.mongo_url).await.unwrap();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        let CommandEvent::Started(started) = event else {
            return;
        };
        let name = started.command_name.as_str();
        let list = match name {
            "insert" => "documents",
            "update" => "updates",
            "delete" => "deletes",
            _ => return,
        };
        if started.command.get_str(name) != Ok("customers") {
            return;
        }
        let statements = started.command.get_array(list).cloned().unwrap_or_default();
        let first = match statements.first() {
            Some(Bson::Document(first)) => first.clone(),
            _ => Document::new(),
        };
        seen.lock().unwrap().push((name.to_owned(), statements.len(), first));
    }));
    let client = mongodb::Client::with_options(options).unwrap();
    let sources = config.sources().unwrap();
    (Engine::new(client.database(&config.db_name), config, sources), writes)
}

fn at(date: &str) -> DateTime {
    DateTime::parse_rfc3339_str(date).unwrap()
}

/// The app's data before the sync: three users, Acme (with stakeholders,
/// tags, an activity pointing at it and a renewal date held as an ISO
/// string), Globex (with an account manager the sheet clears) and Hooli,
/// which the sheet does not have.
async fn seed(cs: &mongodb::Database) {
    cs.collection::<Document>("users")
        .insert_many([
            doc! { "id": "u-claire", "email": "Claire.Martin@example.com", "name": "Claire Martin", "role": "CSM" },
            doc! { "id": "u-hugo", "email": "hugo.bernard@example.com", "name": "Hugo Bernard", "role": "AM" },
            doc! { "id": "u-nadia", "email": "nadia.costa@example.com", "name": "Nadia Costa", "role": "CSM" },
        ])
        .await
        .unwrap();
    cs.collection::<Document>("customers")
        .insert_many([
            doc! {
                "id": "c-acme", "company_name": "Acme Corp", "arr": 100000.0, "health_score": 70,
                "renewal_date": "2025-01-31", "tags": ["legacy"],
                "stakeholders": [{ "name": "Wile E.", "role": "Champion" }],
                "created_at": at("2023-05-01T09:00:00Z"), "updated_at": at("2023-05-01T09:00:00Z"),
            },
            doc! {
                "id": "c-globex", "company_name": "Globex", "am_owner_name": "Old AM", "am_owner_id": "u-old",
                "created_at": at("2024-01-01T00:00:00Z"), "updated_at": at("2024-01-01T00:00:00Z"),
            },
            doc! {
                "id": "c-hooli", "company_name": "Hooli", "arr": 5000.0,
                "created_at": at("2024-02-01T00:00:00Z"), "updated_at": at("2024-02-01T00:00:00Z"),
            },
        ])
        .await
        .unwrap();
    cs.collection::<Document>("activities")
        .insert_one(doc! { "id": "a-1", "customer_id": "c-acme", "activity_type": "call" })
        .await
        .unwrap();
}

async fn customers(cs: &mongodb::Database) -> Vec<Document> {
    let mut all: Vec<Document> = cs
        .collection::<Document>("customers")
        .find(doc! {})
        .projection(doc! { "_id": 0 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    all.sort_by_key(|customer| customer.get_str("company_name").unwrap_or_default().to_lowercase());
    all
}

fn customer<'a>(all: &'a [Document], name: &str) -> &'a Document {
    all.iter()
        .find(|customer| customer.get_str("company_name") == Ok(name))
        .unwrap_or_else(|| panic!("no customer {name:?} in {all:#?}"))
}

async fn sync_once(engine: &Engine) -> SyncReport {
    let mut reports = engine.sync(&[], Trigger::Cli, SyncOptions::default()).await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    reports.remove(0)
}

use futures_util::TryStreamExt;

fn cs_name(sales: &str) -> String {
    format!("{sales}_cs")
}

#[tokio::test]
async fn the_customer_export_is_merged_into_the_shared_collection() {
    let sales = test_db("cs_merge").await;
    let cs = sales.db.client().database(&cs_name(&sales.name));
    seed(&cs).await;
    let dir = tempfile::tempdir().unwrap();
    let source = format!("{FIXTURES}/customers-export.csv");
    let config = cs_config(dir.path(), &server_url(), &sales.name, cs.name(), &source, "");
    let (engine, writes) = monitored_engine(config).await;

    let report = sync_once(&engine).await;
    assert_eq!(report.outcome, Outcome::SuccessWithWarnings, "{report:#?}");
    assert_eq!(report.name, "Customers");
    assert_eq!(report.records_written, 4);
    assert_eq!(report.duplicates_merged, 1);
    assert_eq!(
        (report.changes.inserted, report.changes.updated),
        (2, 2),
        "{:?}",
        report.changes
    );
    let merge = report.merge.clone().unwrap();
    assert_eq!(merge.not_in_source, ["Hooli"]);
    assert_eq!(merge.documents_written, 4);
    let unknown: Vec<_> = report
        .warnings
        .iter()
        .filter(|issue| issue.value.as_deref() == Some("Unknown Person"))
        .collect();
    assert_eq!(unknown.len(), 1, "{:#?}", report.warnings);
    assert_eq!((unknown[0].row, unknown[0].column.as_deref()), (7, Some("CSM")));

    let all = customers(&cs).await;
    assert_eq!(all.len(), 5, "Hooli is kept: {all:#?}");
    let acme = customer(&all, "Acme Corp");
    assert_eq!(acme.get_str("id"), Ok("c-acme"));
    assert_eq!(acme.get_datetime("created_at"), Ok(&at("2023-05-01T09:00:00Z")));
    assert_eq!(acme.get_array("stakeholders").unwrap().len(), 1, "app fields survive");
    assert_eq!(acme.get_f64("arr"), Ok(126000.0), "the later row wins");
    assert_eq!(acme.get_f64("health_score"), Ok(85.0));
    assert_eq!(acme.get_array("tags").unwrap(), &vec![Bson::String("strategic".into())]);
    assert_eq!(acme.get_i64("calls_processed"), Ok(1_310_002));
    assert_eq!(acme.get_str("csm_owner_id"), Ok("u-claire"));
    assert_eq!(acme.get_str("am_owner_id"), Ok("u-hugo"));
    assert_eq!(
        acme.get_str("renewal_date"),
        Ok("2026-01-31"),
        "held as ISO strings, written so"
    );
    assert_eq!(
        acme.get_datetime("contract_start_date"),
        Ok(&at("2024-02-01T00:00:00Z"))
    );

    let globex = customer(&all, "Globex");
    assert_eq!(globex.get_str("csm_owner_id"), Ok("u-claire"), "found by e-mail");
    assert_eq!(globex.get_str("csm_owner_name"), Ok("Claire Martin"), "the user's name");
    assert!(
        globex.get("am_owner_name").is_none() && globex.get("am_owner_id").is_none(),
        "{globex:#?}"
    );
    assert_eq!(globex.get_array("tags").unwrap(), &vec![Bson::String("at-risk".into())]);

    let umbrella = customer(&all, "Umbrella Health");
    assert_eq!(umbrella.get_str("csm_owner_name"), Ok("Unknown Person"));
    assert!(umbrella.get("csm_owner_id").is_none());
    assert!(uuid::Uuid::parse_str(umbrella.get_str("id").unwrap()).is_ok());
    assert_eq!(
        umbrella.get_array("tags").unwrap(),
        &vec![Bson::String("healthcare".into()), Bson::String("strategic".into())]
    );
    let initech = customer(&all, "Initech");
    assert_eq!(initech.get_str("csm_owner_id"), Ok("u-nadia"));
    assert_eq!(initech.get_str("renewal_date"), Ok("2026-01-09"));
    assert!(initech.get("website").is_none() && initech.get("health_score").is_none());
    assert_eq!(customer(&all, "Hooli").get_f64("arr"), Ok(5000.0));
    let activity = cs
        .collection::<Document>("activities")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(activity.get_str("customer_id"), Ok("c-acme"));

    // The run is in the app's own database, the views' database untouched.
    let runs = cs
        .collection::<Document>("sync_runs")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(runs, 1);
    assert_eq!(sales.count("sync_runs").await, 0);
    assert_eq!(sales.count("data_metadata").await, 0);
    // The app's unique indexes are in place.
    let indexes = cs.collection::<Document>("customers").list_index_names().await.unwrap();
    assert!(
        indexes.iter().any(|name| name.starts_with("company_name")),
        "{indexes:?}"
    );

    // The same file again writes nothing.
    writes.lock().unwrap().clear();
    let again = sync_once(&engine).await;
    assert_eq!(again.changes.unchanged, 4, "{:?}", again.changes);
    assert_eq!(again.merge.unwrap().write_mode, Some(WriteMode::Nothing));
    assert!(writes.lock().unwrap().is_empty(), "{:?}", writes.lock().unwrap());

    // One changed cell: one $set of that field and updated_at.
    let edited = std::fs::read_to_string(&source)
        .unwrap()
        .replace(",41,At risk,", ",45,At risk,");
    let edited_path = dir.path().join("edited.csv");
    std::fs::write(&edited_path, edited).unwrap();
    let config = cs_config(
        dir.path(),
        &server_url(),
        &sales.name,
        cs.name(),
        edited_path.to_str().unwrap(),
        "",
    );
    let (engine, writes) = monitored_engine(config).await;
    let changed = sync_once(&engine).await;
    assert_eq!(changed.changes.updated, 1);
    let writes = writes.lock().unwrap().clone();
    assert_eq!(writes.len(), 1, "{writes:?}");
    let (command, statements, first) = &writes[0];
    assert_eq!((command.as_str(), *statements), ("update", 1));
    let set = first.get_document("u").unwrap().get_document("$set").unwrap();
    let fields: Vec<&str> = set.keys().map(String::as_str).collect();
    assert_eq!(fields, ["health_score", "updated_at"]);
    assert_eq!(set.get_f64("health_score"), Ok(45.0));
    sales.drop().await;
    cs.drop().await.unwrap();
}

/// Everything of a customer that a rerun must reproduce: not the times
/// of the writes, nor the id a new customer happened to get.
fn comparable(all: Vec<Document>) -> Vec<Document> {
    all.into_iter()
        .map(|mut customer| {
            customer.remove("updated_at");
            if !customer.get_str("id").is_ok_and(|id| id.starts_with("c-")) {
                customer.remove("id");
                customer.remove("created_at");
            }
            customer
        })
        .collect()
}

#[tokio::test]
async fn a_merge_cut_midway_is_completed_by_the_next_run() {
    let sales = test_db("cs_cut").await;
    let app_name = format!("failpoint-{}", sales.name);
    let url = crate::harness::url_with(&format!("appName={app_name}"));
    let (cut, whole) = (
        sales.db.client().database(&format!("{}_cut", sales.name)),
        sales.db.client().database(&format!("{}_whole", sales.name)),
    );
    seed(&cut).await;
    seed(&whole).await;
    let dir = tempfile::tempdir().unwrap();
    let source = format!("{FIXTURES}/customers-export.csv");
    // One statement per command and no transaction, so the cut falls
    // between two documents' writes.
    let settings = "\n[sync]\ninsert_batch_size = 1\nmerge_transaction_max = 0\n";
    let cut_config = cs_config(dir.path(), &url, &sales.name, cut.name(), &source, settings);
    let whole_config = cs_config(dir.path(), &server_url(), &sales.name, whole.name(), &source, settings);
    let (cut_syncer, _) = monitored_engine(cut_config).await;
    let (whole_syncer, _) = monitored_engine(whole_config).await;
    sync_once(&whole_syncer).await;

    let admin = sales.db.client().database("admin");
    admin
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "skip": 1 },
            "data": { "failCommands": ["update"], "errorCode": 2, "appName": &app_name },
        })
        .await
        .unwrap();
    let failed = sync_once(&cut_syncer).await;
    admin
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();
    assert_eq!(failed.outcome, Outcome::Failed, "{failed:#?}");
    let error = failed.error.unwrap();
    assert!(error.contains("sync again to complete the rest"), "{error}");
    assert!(error.contains("starting at row 5"), "names the sheet's row: {error}");
    assert_eq!(
        failed.merge.as_ref().unwrap().documents_written,
        2,
        "Globex's update and Initech's insert"
    );
    let halfway = customers(&cut).await;
    // Writes go in source order: Globex (row 3), then Acme (its winning
    // row is row 5).
    assert_eq!(
        customer(&halfway, "Globex").get_str("csm_owner_id"),
        Ok("u-claire"),
        "the first update went through"
    );
    assert_eq!(
        customer(&halfway, "Acme Corp").get_f64("arr"),
        Ok(100000.0),
        "the second did not"
    );
    // Writes go in source order, so Initech (row 4) was inserted between
    // them, and Umbrella Health (row 7) not.
    assert_eq!(halfway.len(), 4, "{halfway:#?}");
    assert!(
        halfway
            .iter()
            .all(|customer| customer.get_str("company_name") != Ok("Umbrella Health"))
    );

    let completed = sync_once(&cut_syncer).await;
    assert_eq!(completed.outcome, Outcome::SuccessWithWarnings, "{completed:#?}");
    assert_eq!(
        completed.merge.unwrap().write_mode,
        Some(WriteMode::OrderedBatches { batches: 2 }),
        "the rest only: Acme's update and Umbrella's insert"
    );
    assert_eq!(comparable(customers(&cut).await), comparable(customers(&whole).await));
    sales.drop().await;
    cut.drop().await.unwrap();
    whole.drop().await.unwrap();
}

#[tokio::test]
async fn a_small_change_set_goes_in_one_transaction() {
    // The shared test server runs standalone; this one has transactions.
    let server = crate::harness::own_server::OwnServer::start_replica_set();
    let client = mongodb::Client::with_uri_str(&server.url).await.unwrap();
    let cs = client.database("cs_txn");
    seed(&cs).await;
    let dir = tempfile::tempdir().unwrap();
    let source = format!("{FIXTURES}/customers-export.csv");
    let config = cs_config(dir.path(), &server.url, "sales_txn", cs.name(), &source, "");
    let (engine, _) = monitored_engine(config).await;
    let report = sync_once(&engine).await;
    assert_eq!(
        report.merge.unwrap().write_mode,
        Some(WriteMode::Transaction),
        "{:?}",
        report.error
    );
    assert_eq!(customers(&cs).await.len(), 5);
    server.stop();
}

const CONTACTS_PROFILE: &str = r#"
[[targets]]
name = "contacts"
collection = "contacts"
key = ["email"]

[[targets.fields]]
name = "email"
kind = "text"
required = true
aliases = ["mail", "courriel"]

[[targets.fields]]
name = "seats"
kind = "integer"

[[targets.fields]]
name = "vip"
kind = "bool"
"#;

#[tokio::test]
async fn a_profile_declared_in_the_config_syncs_a_csv() {
    let sales = test_db("cs_profile").await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("contacts.csv");
    std::fs::write(
        &csv,
        "E-mail,Seats,VIP\nann@example.com,3,yes\nbob@example.com,\"1,200\",non\n",
    )
    .unwrap();
    // A swap target in a database of its own, not the views' one.
    let crm = sales.db.client().database(&format!("{}_crm", sales.name));
    let config_text = format!(
        "{CONTACTS_PROFILE}\n[[syncs]]\nname = \"Contacts\"\nsource = \"{}\"\ntarget = \"contacts\"\ndatabase = \"{}\"\n",
        csv.display(),
        crm.name()
    );
    let path = dir.path().join("sheetsync.toml");
    std::fs::write(&path, &config_text).unwrap();
    let output = Sheetsync::new()
        .database(&server_url(), &sales.name)
        .config(&path)
        .args(["sync", "--json"])
        .output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sales.count("contacts").await, 0, "nothing in the views' database");
    let mut contacts: Vec<Document> = crm
        .collection::<Document>("contacts")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    contacts.sort_by_key(|contact| contact.get_str("email").unwrap_or_default().to_owned());
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].get_i64("seats"), Ok(3));
    assert_eq!(contacts[0].get_bool("vip"), Ok(true));
    assert_eq!(contacts[1].get_i64("seats"), Ok(1200));
    assert_eq!(contacts[1].get_bool("vip"), Ok(false));

    let targets = Sheetsync::new().config(&path).args(["targets"]).output();
    let listed = String::from_utf8_lossy(&targets.stdout);
    assert!(
        listed.contains(&format!("# target \"contacts\": {}:3", path.display())),
        "{listed}"
    );
    assert!(listed.contains("# target \"customers\": built in"), "{listed}");

    let broken = config_text.replace("kind = \"bool\"", "kind = \"boolean\"");
    std::fs::write(&path, broken).unwrap();
    let check = Sheetsync::new()
        .env("MONGO_URL", &server_url())
        .config(&path)
        .args(["check"])
        .output();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    assert!(
        stderr.contains(&format!(
            "{}:19: field \"vip\" has unknown kind \"boolean\"",
            path.display()
        )),
        "{stderr}"
    );
    crm.drop().await.unwrap();
    sales.drop().await;
}

#[tokio::test]
async fn an_index_the_app_made_otherwise_is_reported_not_dropped() {
    let sales = test_db("cs_index").await;
    let cs = sales.db.client().database(&cs_name(&sales.name));
    seed(&cs).await;
    // The app's team made users.email a plain index; the seed says unique.
    let users = cs.collection::<Document>("users");
    users
        .create_index(mongodb::IndexModel::builder().keys(doc! { "email": 1 }).build())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = format!("{FIXTURES}/customers-export.csv");
    let config = cs_config(dir.path(), &server_url(), &sales.name, cs.name(), &source, "");
    let (engine, _) = monitored_engine(config).await;
    let report = sync_once(&engine).await;
    assert!(report.succeeded(), "{report:#?}");
    let notice = report.notices.iter().find(|notice| notice.contains("users")).cloned();
    let notice = notice.unwrap_or_else(|| panic!("no notice about users.email: {:#?}", report.notices));
    assert!(notice.contains("email") && notice.contains("left as it is"), "{notice}");
    let indexes = users
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let email = indexes.iter().find(|index| index.keys == doc! { "email": 1 }).unwrap();
    assert_ne!(
        email.options.as_ref().and_then(|options| options.unique),
        Some(true),
        "kept as the app made it"
    );
    // The other indexes of the seed are in place.
    let activities = cs
        .collection::<Document>("activities")
        .list_index_names()
        .await
        .unwrap();
    assert!(activities.iter().any(|name| name.starts_with("id")), "{activities:?}");
    sales.drop().await;
    cs.drop().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_cell_keeps_the_stored_value_and_a_blank_one_clears_it() {
    let sales = test_db("cs_unreadable").await;
    let cs = sales.db.client().database(&cs_name(&sales.name));
    seed(&cs).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("customers.csv");
    // Acme's ARR is mistyped (a letter O); Hooli's is cleared.
    std::fs::write(&csv, "Company,ARR\nAcme Corp,\"12O,000\"\nHooli,\nGlobex,48000\n").unwrap();
    let config = cs_config(
        dir.path(),
        &server_url(),
        &sales.name,
        cs.name(),
        csv.to_str().unwrap(),
        "",
    );
    let (engine, _) = monitored_engine(config).await;
    let report = sync_once(&engine).await;
    let warning = report.warnings.iter().find(|issue| issue.row == 2).unwrap();
    assert_eq!(warning.column.as_deref(), Some("ARR"));
    assert!(
        warning.reason.ends_with("the stored value is kept"),
        "{}",
        warning.reason
    );
    let all = customers(&cs).await;
    assert_eq!(customer(&all, "Acme Corp").get_f64("arr"), Ok(100000.0), "kept");
    assert!(customer(&all, "Hooli").get("arr").is_none(), "cleared: {all:#?}");
    assert_eq!(customer(&all, "Globex").get_f64("arr"), Ok(48000.0));
    sales.drop().await;
    cs.drop().await.unwrap();
}

/// A change set larger than `merge_held_writes` is worked out again while
/// it is written: the same documents, changes and write commands as when
/// it is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_set_too_large_to_hold_is_written_as_it_is_worked_out() {
    let sales = test_db("cs_stream").await;
    let source = format!("{FIXTURES}/customers-export.csv");
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for (label, held) in [("held", 10_000), ("streamed", 1)] {
        let cs = sales.db.client().database(&format!("{}_{label}", sales.name));
        seed(&cs).await;
        let extra = format!("\n[sync]\nmerge_transaction_max = 0\nmerge_held_writes = {held}\n");
        let config = cs_config(dir.path(), &server_url(), &sales.name, cs.name(), &source, &extra);
        let (engine, writes) = monitored_engine(config).await;
        let report = sync_once(&engine).await;
        assert_eq!(report.outcome, Outcome::SuccessWithWarnings, "{report:#?}");
        let commands: Vec<(String, usize)> = writes
            .lock()
            .unwrap()
            .iter()
            .map(|(command, statements, _)| (command.clone(), *statements))
            .collect();
        let merge = report.merge.clone().unwrap();
        outcomes.push((
            report.changes,
            merge.documents_written,
            merge.fields_written,
            merge.write_mode,
            merge.not_in_source,
            report.warnings.len(),
            commands,
            comparable(customers(&cs).await),
        ));
        cs.drop().await.unwrap();
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(
        matches!(outcomes[0].3, Some(WriteMode::OrderedBatches { batches }) if batches > 1),
        "{:?}",
        outcomes[0].3
    );
    sales.drop().await;
}
