//! HTTP-layer tests of the REST API: the router over the routing test
//! double, reached through `RestClient` and raw requests, and the
//! `api-rest` binary as a real process over http and https.

mod api {
    pub mod routing_double;
    pub mod support;

    mod auth;
    mod binary;
    mod input_checks;
    mod paging;
    mod round_trip;
    mod spec;
    mod upgrade_routes;
}
