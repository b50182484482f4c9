//! What the service tests share: a `Core` built as the binary builds it
//! (`Core::new`), without listeners or workers, over a fresh store — a SQLite file in a
//! temporary folder, or with `SENDMUX_TEST_STORE=postgres` a PostgreSQL database made
//! for the test and dropped after it.

use std::sync::Arc;

use sendmux_core::Core;
use sendmux_core::config::Settings;
use sendmux_core::crypto::SecretBox;
use sendmux_core::store::Store;

pub fn on_postgres() -> bool {
    match std::env::var("SENDMUX_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("SENDMUX_TEST_STORE must be sqlite or postgres, not {other}"),
    }
}

fn postgres_admin_url() -> String {
    std::env::var("SENDMUX_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A PostgreSQL database made for one test and dropped when the test ends.
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        use sqlx::Connection;
        let name = format!("sendmux_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL at SENDMUX_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
        TestDb { url: format!("{base}/{name}"), name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(result, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// A core over a fresh store; the store goes when this does (the core first).
pub struct TestCore {
    pub core: Arc<Core>,
    _db: Option<TestDb>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestCore {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// A core with these `SENDMUX_*` settings (the data folder and database are its own).
pub async fn core_with(settings: &[(&str, &str)]) -> TestCore {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = if on_postgres() { Some(TestDb::create().await) } else { None };
    let mut vars: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    vars.push(("SENDMUX_DATA_DIR".into(), dir.path().display().to_string()));
    if let Some(db) = &db {
        vars.push(("SENDMUX_DATABASE_URL".into(), db.url.clone()));
    }
    let settings = Settings::from_sources(None, &vars).expect("test settings");
    let store = Store::connect(&settings).await.expect("store");
    store.migrate().await.expect("migrations");
    let secrets = SecretBox::from_encoded(&SecretBox::generate_encoded()).expect("secret key");
    let blobs = Arc::new(sendmux_core::blob::FsBlobStore::new(dir.path().join("blobs")).expect("blob folder"));
    let core = Core::new(settings, store, secrets, blobs).expect("core");
    TestCore { core: Arc::new(core), _db: db, _dir: dir }
}
