//! The installation link: which app store a phone is sent to. The types
//! live in the domain (the store URLs are provisioning settings of the
//! candidate); re-exported here with the rest of provisioning.

pub use switchboard_domain::install::{
    InvalidStoreUrl, Platform, StoreUrl, install_link, platform,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tests::Noise;

    #[test]
    fn random_user_agents_and_urls_never_panic() {
        let mut noise = Noise::new(9);
        for _ in 0..20_000 {
            let s = noise.string(40);
            let _ = platform(&s);
            let _ = format!("https://{s}").parse::<StoreUrl>();
            let _ = s.parse::<StoreUrl>();
        }
    }
}
