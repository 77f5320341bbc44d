//! The role check, in one place: every console request (pages and API) is
//! classified into an [`Area`] by its path ([`area_of`]) and allowed or
//! refused by the engine's role table ([`Role::allows`]) before any handler
//! runs (`console::authenticate`). The HTTP tests enumerate every route
//! (pages from the sources, the API from the OpenAPI document) and check
//! each role against this table.
//!
//! The local socket's clients are root on the appliance: administrators.

use axum::http::Method;
pub use switchboard_engine::{Area, Role};

/// What the route at `path` touches.
pub fn area_of(path: &str) -> Area {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if matches!(
        path,
        "/login" | "/logout" | "/password" | "/openapi.json" | "/healthz" | "/favicon.ico"
    ) || path.starts_with("/static/")
        || path == "/v1/admin/password"
        || under("/me")
        || under("/v1/me")
    {
        Area::Own
    } else if under("/accounts")
        || under("/v1/accounts")
        || under("/sms")
        || under("/v1/sms")
        || matches!(
            path,
            "/v1/activate"
                | "/v1/revoke"
                | "/bulk/accounts"
                | "/v1/bulk/accounts"
                | "/v1/search/accounts"
        )
    {
        Area::Accounts
    } else if under("/admins") || under("/v1/admins") || path == "/v1/admin/totp-policy" {
        Area::Admins
    } else if under("/backup") || under("/v1/backup") || under("/restore") || under("/v1/restore") {
        Area::Backup
    } else {
        Area::Config
    }
}

/// Whether `role` may send `method` to `path`.
pub fn allowed(role: Role, method: &Method, path: &str) -> bool {
    let write = !matches!(*method, Method::GET | Method::HEAD);
    role.allows(area_of(path), write)
}

/// Where a role's administrator lands after signing in.
pub fn home(role: Role) -> &'static str {
    match role {
        Role::Operator => "/accounts",
        Role::Administrator | Role::Auditor => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_in_their_areas() {
        for (path, area) in [
            ("/", Area::Config),
            ("/bind", Area::Config),
            ("/v1/matrix", Area::Config),
            ("/audit", Area::Config),
            ("/v1/audit", Area::Config),
            ("/accounts", Area::Accounts),
            ("/accounts/alice/delete", Area::Accounts),
            ("/v1/accounts/alice", Area::Accounts),
            ("/v1/activate", Area::Accounts),
            ("/sms/3/resend", Area::Accounts),
            ("/bulk/accounts", Area::Accounts),
            ("/v1/bulk/accounts", Area::Accounts),
            ("/v1/search/accounts", Area::Accounts),
            // Not a prefix match on a longer word.
            ("/accountsx", Area::Config),
            ("/v1/admins", Area::Admins),
            ("/admins/ops/disable", Area::Admins),
            ("/v1/admin/password", Area::Own),
            ("/me/totp", Area::Own),
            ("/v1/backup", Area::Backup),
            ("/restore", Area::Backup),
            ("/openapi.json", Area::Own),
        ] {
            assert_eq!(area_of(path), area, "{path}");
        }
        assert!(allowed(Role::Operator, &Method::POST, "/accounts"));
        assert!(!allowed(Role::Operator, &Method::GET, "/"));
        assert!(!allowed(Role::Auditor, &Method::POST, "/v1/matrix/allow"));
        assert!(allowed(Role::Auditor, &Method::GET, "/v1/matrix"));
        assert!(!allowed(Role::Auditor, &Method::POST, "/v1/backup"));
    }
}
