//! End-to-end test support: starting yunwei processes and talking to them.
