//! Performance-assessment report model and renderers. Pure: no I/O, no clock.
