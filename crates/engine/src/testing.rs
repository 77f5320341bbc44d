//! Test support (feature `testing`): the engine of the story's appliance.

use switchboard_domain::Facts;
use switchboard_domain::testing::nic;
use switchboard_system::sms::Gateway;

use crate::{Engine, EngineConfig};

/// An [in-memory](Engine::in_memory) engine, booted (so it has its
/// first-start self-signed certificate), with lan0 (192.0.2.1), wan0
/// (198.51.100.1) and an address-less dmz0.
pub async fn booted() -> Engine {
    booted_with(Gateway::Outbox).await
}

/// [`booted`], sending SMS through `sms_gateway`.
pub async fn booted_with(sms_gateway: Gateway) -> Engine {
    let store = switchboard_store::Store::open_in_memory().expect("an in-memory store");
    booted_on(store, sms_gateway).await
}

/// [`booted_with`] on `store`.
pub async fn booted_on(store: switchboard_store::Store, sms_gateway: Gateway) -> Engine {
    let e = Engine::new(
        EngineConfig {
            sms_gateway,
            ..EngineConfig::detached()
        },
        store,
    )
    .expect("an engine");
    e.set_facts(Facts {
        nics: vec![
            nic("lan0", Some("192.0.2.1")),
            nic("wan0", Some("198.51.100.1")),
            nic("dmz0", None),
        ],
        ..Facts::default()
    });
    e.boot().await.expect("boot");
    e
}
