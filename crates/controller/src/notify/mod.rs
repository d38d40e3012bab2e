//! Chat alerts on the controller's side: [`Alerts`] turns the engine's `Notify` actions into
//! messages with the Canary's facts, picks their destinations (`spec.analysis.alerts`, or the
//! controller's default provider) and hands them to background delivery queues. The providers,
//! the resolution of `AlertProvider` objects and delivery are in `fledge-notifiers`.

mod dispatch;

pub use dispatch::{AlertSettings, Alerts, DefaultProvider, message};
pub use fledge_notifiers::*;
