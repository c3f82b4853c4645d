//! What the config file says about syncs: per-view overrides (`[views]`),
//! the `[[syncs]]` entries, and the borrowed view of the configuration the
//! list of syncs is resolved against. The config loader composes them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::apply::OnLostColumn;
use crate::mapping::conventions::{DateOrderSetting, ReadSettings};
use crate::mapping::declare::Targets;
use crate::mapping::profile::TargetProfile;
use crate::redact::redact_url;
use crate::source::policy::SourcesSettings;
use crate::store::settings::{collection_name_problem, database_name_problem, url_problem};

/// The part of the configuration the list of syncs is resolved against.
#[derive(Debug, Clone)]
pub struct SyncsConfig<'a> {
    /// Which sources views and syncs may name.
    pub sources: &'a SourcesSettings,
    /// Per-view overrides, by view name as the `views` collection spells it.
    pub views: &'a BTreeMap<String, ViewOverride>,
    /// The `[[syncs]]` entries, resolved.
    pub configured: &'a [ConfiguredSync],
    /// How dates are read unless a view or sync says otherwise.
    pub date_order: DateOrderSetting,
    /// `[sync] on_lost_column`, unless a view or sync says otherwise.
    pub on_lost_column: OnLostColumn,
    /// The zone of date-times written without an offset.
    pub time_zone: chrono_tz::Tz,
    /// The profile of every view (`sales_records`).
    pub views_profile: Arc<TargetProfile>,
    /// The main database's name and server: views live there.
    pub main_database: &'a str,
    pub main_url: &'a str,
}

/// What the config may change about one view.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ViewOverride {
    /// Target collection instead of the schema's default for the view name.
    pub collection: Option<String>,
    /// Source instead of the view's `sheet_url`: a `file://` path, a path, a
    /// CSV URL, or a Google Sheets link or ID.
    pub source: Option<String>,
    /// Tab name instead of the view's `sheet_name`.
    pub sheet_name: Option<String>,
    /// `date_order` for this view instead of the `[sync]` one.
    pub date_order: Option<DateOrderSetting>,
    /// `on_lost_column` for this view instead of the `[sync]` one.
    pub on_lost_column: Option<OnLostColumn>,
    /// Header labels no field takes on purpose, besides the profile's.
    #[serde(default)]
    pub ignore_columns: Vec<String>,
    /// The IANA zone of this source's date-times, spreadsheet serials
    /// included (otherwise read in their spreadsheet's zone).
    pub time_zone: Option<String>,
}

/// One `[[syncs]]` entry as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncEntry {
    /// The sync's name in reports, `/status`, metrics and admin refreshes;
    /// distinct from every view's name.
    pub name: String,
    /// A `file://` path, a path (relative ones from the config file's
    /// folder), a CSV URL, or a Google Sheets link or ID.
    pub source: String,
    pub sheet_name: Option<String>,
    /// The target profile's name.
    pub target: String,
    /// The database the target's collection lives in.
    pub database: String,
    /// The collection, when the profile names none or another is wanted.
    pub collection: Option<String>,
    /// The environment variable holding that database's MongoDB URL
    /// (default: `MONGO_URL`, the sales database's server).
    pub mongo_url_env: Option<String>,
    pub date_order: Option<DateOrderSetting>,
    /// `on_lost_column` for this sync instead of the `[sync]` one.
    pub on_lost_column: Option<OnLostColumn>,
    /// Header labels no field takes on purpose, besides the profile's.
    #[serde(default)]
    pub ignore_columns: Vec<String>,
    /// The IANA zone of this source's date-times, spreadsheet serials
    /// included (otherwise read in their spreadsheet's zone).
    pub time_zone: Option<String>,
}

/// A `[[syncs]]` entry resolved against the profiles and the environment.
/// Its `Debug` redacts the connection string.
#[derive(Clone)]
pub struct ConfiguredSync {
    pub entry: SyncEntry,
    pub profile: Arc<TargetProfile>,
    pub collection: String,
    /// The MongoDB URL of `entry.database`'s server.
    pub mongo_url: String,
}

impl std::fmt::Debug for ConfiguredSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredSync")
            .field("entry", &self.entry)
            .field("profile", &self.profile.name)
            .field("collection", &self.collection)
            .field("mongo_url", &redact_url(&self.mongo_url))
            .finish()
    }
}

impl ConfiguredSync {
    /// `entry` with its profile (from `targets`), collection and server
    /// resolved: `mongo_url` is the main one, `env` answers the variable a
    /// sync names for its own; a relative file source is read from
    /// `config_file`'s folder. `Err` says what to change.
    pub fn resolve(
        mut entry: SyncEntry,
        config_file: Option<&Path>,
        targets: &Targets,
        mongo_url: &str,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<ConfiguredSync, String> {
        // A relative file path is read from the config file's folder, wherever
        // sheetsync was started.
        let relative_file = !entry.source.contains("://")
            && Path::new(&entry.source).is_relative()
            && (entry.source.starts_with('.') || entry.source.contains('/') || entry.source.ends_with(".csv"));
        if let (true, Some(folder)) = (relative_file, config_file.and_then(Path::parent)) {
            let joined = folder.join(&entry.source);
            entry.source = std::path::absolute(&joined).unwrap_or(joined).display().to_string();
        }
        let name = &entry.name;
        let profile = targets.get(&entry.target).ok_or_else(|| {
            format!(
                "sync {name:?} names target {:?}, which no profile declares; known targets: {}",
                entry.target,
                targets.names().join(", ")
            )
        })?;
        let collection = entry
            .collection
            .clone()
            .or_else(|| profile.collection.clone())
            .ok_or_else(|| {
                format!(
                    "sync {name:?}: target {:?} names no collection; set `collection` in the sync",
                    entry.target
                )
            })?;
        let mongo_url = match entry.mongo_url_env.as_deref() {
            None | Some("MONGO_URL") => mongo_url.to_owned(),
            Some(variable) => env(variable).ok_or_else(|| {
                format!(
                    "sync {name:?} reads its MongoDB URL from the environment variable {variable} (mongo_url_env), \
                 which is not set"
                )
            })?,
        };
        if let Some(problem) = url_problem(&format!("sync {name:?}: its MongoDB URL"), &mongo_url) {
            return Err(problem);
        }
        Ok(ConfiguredSync {
            entry,
            profile,
            collection,
            mongo_url,
        })
    }
}

/// What is wrong with the `[[syncs]]` entries as a set, each naming what to
/// change: a missing or repeated name, an invalid database or collection
/// name, two syncs writing one collection.
pub fn sync_problems(syncs: &[ConfiguredSync]) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, sync) in syncs.iter().enumerate() {
        let name = &sync.entry.name;
        let setting = format!("syncs[{index}] ({name:?})");
        if name.trim().is_empty() {
            problems.push(format!("{setting} needs a name"));
        }
        if syncs[..index]
            .iter()
            .any(|other| other.entry.name.eq_ignore_ascii_case(name))
        {
            problems.push(format!("{setting}: two syncs are named {name:?}"));
        }
        problems.extend(zone_problem(
            &format!("{setting}.time_zone"),
            sync.entry.time_zone.as_deref(),
        ));
        problems.extend(database_name_problem(
            &format!("{setting}.database"),
            &sync.entry.database,
        ));
        problems.extend(collection_name_problem(
            &format!("{setting}.collection"),
            &sync.collection,
        ));
        let same_place = |other: &ConfiguredSync| {
            other.entry.database == sync.entry.database
                && other.collection == sync.collection
                && other.mongo_url == sync.mongo_url
        };
        if syncs[..index].iter().any(same_place) {
            problems.push(format!(
                "{setting} writes `{}.{}`, as another sync does; give each its own collection",
                sync.entry.database, sync.collection
            ));
        }
    }
    problems
}

/// What is wrong with the `[views]` overrides, each naming the setting.
pub fn view_problems(views: &BTreeMap<String, ViewOverride>) -> Vec<String> {
    let mut problems = Vec::new();
    for (view, settings) in views {
        if let Some(collection) = &settings.collection {
            problems.extend(collection_name_problem(
                &format!("views.\"{view}\".collection"),
                collection,
            ));
        }
        problems.extend(zone_problem(
            &format!("views.\"{view}\".time_zone"),
            settings.time_zone.as_deref(),
        ));
    }
    problems
}

impl SyncsConfig<'_> {
    /// How a view's or sync's cells are read: its own date order and zone
    /// where it names them (its own zone then applies to spreadsheet
    /// serials too), else the `[sync]` ones.
    pub fn read_settings(&self, date_order: Option<DateOrderSetting>, time_zone: Option<&str>) -> ReadSettings {
        // An invalid zone is refused when the config is loaded.
        let own_zone = time_zone.and_then(|zone| zone.parse::<chrono_tz::Tz>().ok());
        ReadSettings {
            date_order: date_order.unwrap_or(self.date_order),
            time_zone: own_zone.unwrap_or(self.time_zone),
            zone_is_the_syncs: own_zone.is_some(),
        }
    }
}

/// The header labels a sync ignores on purpose: its profile's and its own.
pub fn ignored_labels(profile: &TargetProfile, own: &[String]) -> Vec<String> {
    profile.ignore_columns.iter().chain(own).cloned().collect()
}

fn zone_problem(setting: &str, zone: Option<&str>) -> Option<String> {
    let zone = zone?;
    zone.parse::<chrono_tz::Tz>()
        .is_err()
        .then(|| format!("{setting} {zone:?} is not an IANA zone name such as \"Europe/Paris\""))
}
