//! Rule files, PromQL evaluation, contracts, calendars and SLA arithmetic. Pure: no I/O, no clock.

pub mod promql;
