//! The durable spool: batches wait here, on disk, until the server has acknowledged them.
//!
//! The spool is a folder (`<state_dir>/spool/`) of append-only segment files
//! `<id>.seg`, each a sequence of checksummed records:
//!
//! ```text
//! magic "YWS1" | payload length u32 LE | CRC-32 of the payload u32 LE | payload
//! ```
//!
//! A payload is either a *batch* (its sequence number, collection times, the bookkeeping of any
//! data dropped to make room for it, and the gzip body exactly as it is sent) or a *mark* (the
//! next sequence number and the highest sequence number that is done, i.e. acknowledged,
//! rejected or dropped). Promises:
//!
//! - [`Spool::append`] returns only after the record is written and `fdatasync`ed: a batch is
//!   queued only once it would survive a crash. The sequence number is taken by the append
//!   itself, so a batch that never reached the disk never used a number the server could see.
//! - A batch is done only after the server acknowledged (or refused) it; the mark recording that
//!   is written without a sync, so a crash at worst sends the batch again, which the server
//!   deduplicates on `(agent_id, seq)`.
//! - Bounds (`spool_max_bytes`, `spool_max_age_secs`) drop the oldest data first: whole segments
//!   for bytes, oldest batches for age. The new batch that causes the drop carries a
//!   [`Event::SpoolGap`] describing it and the sequence number up to which data is dropped, and
//!   is synced before any file is deleted, so the loss is always reported, never silent.
//! - On open, every segment is read and checked. A record with a bad checksum or length (a torn
//!   tail after a power loss, a damaged disk) is skipped and counted; reading resumes at the
//!   next valid record. Sequence numbers missing between the done mark and the newest batch are
//!   reported to the server as a gap.
//! - Each process appends to a fresh segment, so a torn tail is never appended to.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use yunwei_proto::{Batch, Event, decode_batch};

const MAGIC: &[u8; 4] = b"YWS1";
const HEADER: usize = 12;
/// A payload claiming to be larger than this is treated as corruption.
const MAX_PAYLOAD: usize = 64 << 20;
const KIND_BATCH: u8 = 1;
const KIND_MARK: u8 = 2;
/// A batch whose body states an age that is off by more than this is re-encoded before sending.
const AGE_TOLERANCE_MS: u64 = 250;

/// Why data was dropped; the text is the `reason` of the gap event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GapReason {
    /// `spool_max_bytes` was reached.
    Full = 1,
    /// A batch was older than `spool_max_age_secs`.
    MaxAge = 2,
    /// A record could not be read back (damaged or missing on disk).
    Corrupt = 3,
    /// The batch could not be written to the spool (disk full, I/O error).
    WriteFailed = 4,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Full => "spool full",
            GapReason::MaxAge => "spool max age",
            GapReason::Corrupt => "spool record corrupt",
            GapReason::WriteFailed => "spool write failed",
        }
    }

    fn from_u8(v: u8) -> Option<GapReason> {
        Some(match v {
            1 => GapReason::Full,
            2 => GapReason::MaxAge,
            3 => GapReason::Corrupt,
            4 => GapReason::WriteFailed,
            _ => return None,
        })
    }

    fn from_str(s: &str) -> GapReason {
        [
            GapReason::Full,
            GapReason::MaxAge,
            GapReason::Corrupt,
            GapReason::WriteFailed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .unwrap_or(GapReason::Corrupt)
    }
}

/// Data dropped, as reported in one [`Event::SpoolGap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub batches: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Gap {
    fn one(seq: u64, bytes: u64, at_ms: i64) -> Gap {
        Gap {
            batches: 1,
            bytes,
            first_seq: seq,
            last_seq: seq,
            from_ms: at_ms,
            to_ms: at_ms,
        }
    }

    fn merge(self, other: Gap) -> Gap {
        Gap {
            batches: self.batches + other.batches,
            bytes: self.bytes + other.bytes,
            first_seq: self.first_seq.min(other.first_seq),
            last_seq: self.last_seq.max(other.last_seq),
            from_ms: self.from_ms.min(other.from_ms),
            to_ms: self.to_ms.max(other.to_ms),
        }
    }

    fn event(self, reason: GapReason) -> Event {
        Event::SpoolGap {
            dropped_batches: self.batches,
            dropped_bytes: self.bytes,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            reason: reason.as_str().to_string(),
        }
    }
}

/// Gaps waiting to be reported, at most one per reason.
type Gaps = BTreeMap<GapReason, Gap>;

fn add_gap(gaps: &mut Gaps, reason: GapReason, gap: Gap) {
    gaps.entry(reason)
        .and_modify(|g| *g = g.merge(gap))
        .or_insert(gap);
}

/// The spool's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl SpoolLimits {
    /// Size at which a new segment is started: an eighth of the bound, within 16 KiB..8 MiB.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(16 << 10, 8 << 20)
    }
}

/// Counters since the spool was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches dropped because of the bounds or because they could not be read back.
    pub dropped_batches: u64,
    /// Damaged regions found when opening (torn tails included).
    pub corrupt_records: u64,
    pub corrupt_bytes: u64,
    /// Appends that failed (the batch was lost and reported as a gap).
    pub write_errors: u64,
}

/// The agent's monotonic clock, comparable across restarts within one boot: milliseconds since
/// boot (from `/proc/uptime` once, then `Instant`), tagged with the kernel's boot id.
#[derive(Debug, Clone, Copy)]
pub struct MonoClock {
    boot: u64,
    base_ms: u64,
    base: Instant,
}

impl MonoClock {
    pub fn new() -> MonoClock {
        let read = |p| fs::read_to_string(p).ok();
        // Without /proc (another OS) each process counts as its own boot, so ages across
        // restarts fall back to the wall clock.
        let boot = read("/proc/sys/kernel/random/boot_id")
            .map(|s| {
                let hex: String = s.chars().filter(char::is_ascii_hexdigit).take(16).collect();
                u64::from_str_radix(&hex, 16).unwrap_or(0)
            })
            .unwrap_or_else(|| u64::from(std::process::id()) | (1 << 63));
        let base_ms = read("/proc/uptime")
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0, |secs| (secs * 1000.0) as u64);
        MonoClock {
            boot,
            base_ms,
            base: Instant::now(),
        }
    }

    /// Milliseconds since boot for `at`.
    pub fn ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.base) {
            Some(after) => self.base_ms + after.as_millis() as u64,
            None => self
                .base_ms
                .saturating_sub(self.base.duration_since(at).as_millis() as u64),
        }
    }
}

impl Default for MonoClock {
    fn default() -> Self {
        MonoClock::new()
    }
}

/// What is known about a batch in the spool, without its body.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    segment: u64,
    /// Offset of the record (its header) in the segment, and its total size.
    offset: u64,
    size: u32,
    collected_at_ms: i64,
    boot: u64,
    mono_ms: u64,
    /// `age_ms` written in the stored body.
    encoded_age_ms: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    /// Highest batch sequence number in it (0 if none).
    max_seq: u64,
}

/// Decoded batch record payload (without the body).
#[derive(Debug, Clone)]
struct BatchMeta {
    seq: u64,
    collected_at_ms: i64,
    boot: u64,
    mono_ms: u64,
    encoded_age_ms: u64,
    /// Batches up to this sequence number were dropped when this batch was appended.
    drop_through: u64,
    gaps: Vec<(GapReason, Gap)>,
}

/// A batch ready to be sent.
#[derive(Debug)]
pub struct Outgoing {
    pub seq: u64,
    /// The gzip body with an up-to-date `age_ms`.
    pub body: Vec<u8>,
}

/// The on-disk queue of batches. See the module documentation.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    clock: MonoClock,
    segments: VecDeque<Segment>,
    tail: File,
    pending: VecDeque<Entry>,
    /// Gap events carried by pending batches, so a dropped carrier's report is folded into the
    /// next one.
    carried: BTreeMap<u64, Vec<(GapReason, Gap)>>,
    /// Gaps not yet attached to a batch.
    gaps: Gaps,
    next_seq: u64,
    done_seq: u64,
    /// The body of the newest append, to send without reading it back.
    last_body: Option<(u64, Vec<u8>)>,
    stats: SpoolStats,
    encoder: Encoder,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and reads every segment. `fallback_next_seq`
    /// is used when the spool holds no record (first start, or the folder was removed).
    pub fn open(
        dir: &Path,
        limits: SpoolLimits,
        fallback_next_seq: u64,
        clock: MonoClock,
    ) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut stats = SpoolStats::default();
        let mut segments = VecDeque::new();
        let mut batches: BTreeMap<u64, (Entry, BatchMeta)> = BTreeMap::new();
        let mut done_seq = 0u64;
        let mut max_seq = 0u64;
        for &id in &ids {
            let data = fs::read(segment_path(dir, id))?;
            let mut seg = Segment {
                id,
                bytes: data.len() as u64,
                max_seq: 0,
            };
            scan(&data, &mut stats, |offset, size, payload| {
                match payload.first() {
                    Some(&KIND_BATCH) => {
                        let Some((meta, _)) = decode_batch_meta(payload) else {
                            return false;
                        };
                        max_seq = max_seq.max(meta.seq);
                        seg.max_seq = seg.max_seq.max(meta.seq);
                        done_seq = done_seq.max(meta.drop_through);
                        let entry = Entry {
                            seq: meta.seq,
                            segment: id,
                            offset,
                            size,
                            collected_at_ms: meta.collected_at_ms,
                            boot: meta.boot,
                            mono_ms: meta.mono_ms,
                            encoded_age_ms: meta.encoded_age_ms,
                        };
                        // A later record with the same number (written after a torn tail)
                        // replaces the earlier one.
                        batches.insert(meta.seq, (entry, meta));
                        true
                    }
                    Some(&KIND_MARK) if payload.len() >= 17 => {
                        let next = u64_at(payload, 1);
                        let done = u64_at(payload, 9);
                        max_seq = max_seq.max(next.saturating_sub(1));
                        done_seq = done_seq.max(done);
                        true
                    }
                    _ => false,
                }
            });
            segments.push_back(seg);
        }
        let next_seq = if ids.is_empty() || max_seq == 0 {
            fallback_next_seq.max(1)
        } else {
            max_seq + 1
        };

        // Sequence numbers between the done mark and the newest batch that are neither in the
        // spool nor covered by a reported gap were lost to damage.
        let mut gaps = Gaps::new();
        let mut covered: Vec<(u64, u64)> = Vec::new();
        let mut carried = BTreeMap::new();
        let mut pending = VecDeque::new();
        for (seq, (entry, meta)) in &batches {
            covered.extend(meta.gaps.iter().map(|(_, g)| (g.first_seq, g.last_seq)));
            if *seq > done_seq {
                pending.push_back(*entry);
                if !meta.gaps.is_empty() {
                    carried.insert(*seq, meta.gaps.clone());
                }
            }
        }
        let mut prev: Option<(u64, i64)> = None;
        for (seq, (entry, _)) in batches.range(done_seq + 1..) {
            let lo = prev.map_or(done_seq + 1, |(p, _)| p + 1);
            let from_ms = prev.map_or(entry.collected_at_ms, |(_, t)| t);
            for missing in lo..*seq {
                if !covered.iter().any(|&(a, b)| (a..=b).contains(&missing)) {
                    let gap = Gap {
                        to_ms: entry.collected_at_ms.max(from_ms),
                        ..Gap::one(missing, 0, from_ms)
                    };
                    add_gap(&mut gaps, GapReason::Corrupt, gap);
                }
            }
            prev = Some((*seq, entry.collected_at_ms));
        }
        if let Some(g) = gaps.get(&GapReason::Corrupt) {
            stats.dropped_batches += g.batches;
        }

        let tail_id = ids.last().map_or(1, |id| id + 1);
        let tail = create_segment(dir, tail_id)?;
        segments.push_back(Segment {
            id: tail_id,
            bytes: 0,
            max_seq: 0,
        });
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            clock,
            segments,
            tail,
            pending,
            carried,
            gaps,
            next_seq,
            done_seq,
            last_body: None,
            stats,
            encoder: Encoder::default(),
        };
        // The fresh segment starts with a synced mark, so the newest sequence number stays known
        // however many old segments are removed.
        spool.write_mark(true)?;
        spool.collect_garbage();
        Ok(spool)
    }

    /// New bounds (on a configuration reload); applied from the next append.
    pub fn set_limits(&mut self, limits: SpoolLimits) {
        self.limits = limits;
    }

    /// The sequence number the next appended batch gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Batches waiting to be sent.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Size of the spool's files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// The clock the spool measures ages with.
    pub fn clock(&self) -> &MonoClock {
        &self.clock
    }

    /// Queues `batch`, collected at `collected` (monotonic) and `batch.collected_at_ms` (wall
    /// clock): gives it the next sequence number, makes room within the bounds, attaches gap
    /// events for anything dropped, writes and syncs it. Returns the sequence number.
    ///
    /// On a write error the batch is lost; that is counted and reported as a gap with the next
    /// batch that can be written.
    pub fn append(
        &mut self,
        batch: &mut Batch,
        collected: Instant,
        now_ms: i64,
    ) -> io::Result<u64> {
        let seq = self.next_seq;
        batch.seq = seq;
        let mono_ms = self.clock.ms(collected);
        let age_ms = self.clock.ms(Instant::now()).saturating_sub(mono_ms);
        batch.age_ms = age_ms;

        // Drop by age: the oldest batches first.
        let max_age_ms = self.limits.max_age.as_millis() as i64;
        let mut drop_through = 0;
        let mut dropping = Gaps::new();
        while let Some(e) = self.pending.front().copied() {
            if now_ms.saturating_sub(e.collected_at_ms) <= max_age_ms {
                break;
            }
            self.drop_entry(e, GapReason::MaxAge, &mut dropping);
            drop_through = e.seq;
        }

        // Encode with the gaps known so far; dropping for room may add to them (and then the
        // body is encoded again, which only happens when the spool is full).
        let mut gaps = self.gaps.clone();
        merge_gaps(&mut gaps, &dropping);
        let mut body = encode_with_gaps(&mut self.encoder, batch, &gaps);
        let mut size = (HEADER + batch_meta_len(&gaps) + body.len()) as u64;

        // Start a new segment when the tail would grow past its target size.
        let tail_bytes = self.segments.back().map_or(0, |s| s.bytes);
        if tail_bytes > 0 && tail_bytes + size > self.limits.segment_bytes() {
            self.roll()?;
        }
        // Drop whole old segments while the bound would be exceeded.
        let mut dropped_segments = Vec::new();
        while self.bytes() + size > self.limits.max_bytes && self.segments.len() > 1 {
            let seg = self.segments.pop_front().expect("more than one segment");
            while let Some(e) = self.pending.front().copied() {
                if e.segment != seg.id {
                    break;
                }
                self.drop_entry(e, GapReason::Full, &mut dropping);
                drop_through = e.seq;
            }
            drop_through = drop_through.max(seg.max_seq.min(seq - 1));
            dropped_segments.push(seg.id);
            gaps = self.gaps.clone();
            merge_gaps(&mut gaps, &dropping);
            body = encode_with_gaps(&mut self.encoder, batch, &gaps);
            size = (HEADER + batch_meta_len(&gaps) + body.len()) as u64;
        }

        let collected_at_ms = batch.collected_at_ms;
        let meta = BatchMeta {
            seq,
            collected_at_ms,
            boot: self.clock.boot,
            mono_ms,
            encoded_age_ms: age_ms,
            drop_through,
            gaps: gaps.iter().map(|(r, g)| (*r, *g)).collect(),
        };
        let mut payload = encode_batch_meta(&meta);
        payload.extend_from_slice(&body);
        let offset = self.segments.back().map_or(0, |s| s.bytes);
        self.next_seq = seq + 1;
        if let Err(e) = self.write_record(&payload, true) {
            // The record may be partly written: cut it off and continue in a fresh segment.
            let _ = self.tail.set_len(offset);
            let _ = self.roll();
            self.stats.write_errors += 1;
            self.stats.dropped_batches += 1;
            add_gap(
                &mut self.gaps,
                GapReason::WriteFailed,
                Gap::one(seq, payload.len() as u64, collected_at_ms),
            );
            // What was dropped to make room is gone from memory; report it with the next batch.
            merge_gaps(&mut self.gaps, &dropping);
            for id in dropped_segments {
                let _ = fs::remove_file(segment_path(&self.dir, id));
            }
            return Err(e);
        }
        // Durable: the gaps are reported by this batch, and the dropped data may go.
        self.gaps.clear();
        if drop_through > self.done_seq {
            self.done_seq = drop_through;
        }
        for id in dropped_segments {
            let _ = fs::remove_file(segment_path(&self.dir, id));
        }
        let tail = self.segments.back_mut().expect("tail segment");
        tail.max_seq = seq;
        if !meta.gaps.is_empty() {
            self.carried.insert(seq, meta.gaps.clone());
        }
        self.pending.push_back(Entry {
            seq,
            segment: tail.id,
            offset,
            size: (HEADER + payload.len()) as u32,
            collected_at_ms,
            boot: self.clock.boot,
            mono_ms,
            encoded_age_ms: age_ms,
        });
        self.last_body = Some((seq, body));
        self.collect_garbage();
        Ok(seq)
    }

    /// The oldest batch with its body, its `age_ms` brought up to date. A record that cannot be
    /// read back is dropped, counted and reported as a gap, and the next one is tried.
    pub fn front(&mut self) -> Option<Outgoing> {
        loop {
            let e = *self.pending.front()?;
            match self.read_body(&e) {
                Ok(body) => return Some(Outgoing { seq: e.seq, body }),
                Err(err) => {
                    eprintln!(
                        "error: spooled batch {} cannot be read back ({err}); dropping it",
                        e.seq
                    );
                    let mut gaps = Gaps::new();
                    self.drop_entry(e, GapReason::Corrupt, &mut gaps);
                    merge_gaps(&mut self.gaps, &gaps);
                    self.done_seq = self.done_seq.max(e.seq);
                    let _ = self.write_mark(false);
                }
            }
        }
    }

    /// Marks the oldest batch done (acknowledged by the server, or refused by it for good) and
    /// removes segments that hold nothing pending.
    pub fn complete_front(&mut self) -> io::Result<()> {
        let Some(e) = self.pending.pop_front() else {
            return Ok(());
        };
        self.carried.remove(&e.seq);
        self.done_seq = self.done_seq.max(e.seq);
        if self.last_body.as_ref().is_some_and(|(s, _)| *s == e.seq) {
            self.last_body = None;
        }
        // Not synced: if this mark is lost, the batch is sent again and deduplicated.
        self.write_mark(false)?;
        self.collect_garbage();
        Ok(())
    }

    fn read_body(&mut self, e: &Entry) -> io::Result<Vec<u8>> {
        let mut body = match &self.last_body {
            Some((seq, body)) if *seq == e.seq => body.clone(),
            _ => {
                use std::io::{Read, Seek, SeekFrom};
                let mut file = File::open(segment_path(&self.dir, e.segment))?;
                file.seek(SeekFrom::Start(e.offset))?;
                let mut record = vec![0; e.size as usize];
                file.read_exact(&mut record)?;
                let payload = check_record(&record)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad checksum"))?;
                let (meta, body_at) = decode_batch_meta(payload).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "bad record header")
                })?;
                if meta.seq != e.seq {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("record holds batch {}", meta.seq),
                    ));
                }
                payload[body_at..].to_vec()
            }
        };
        let age = self.age_ms(e);
        if age.abs_diff(e.encoded_age_ms) > AGE_TOLERANCE_MS {
            let mut batch = decode_batch(&body, MAX_PAYLOAD)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
            batch.age_ms = age;
            body = self.encoder.encode(&batch);
        }
        Ok(body)
    }

    /// Age of a batch: on the monotonic clock within one boot, else by the wall clock.
    fn age_ms(&self, e: &Entry) -> u64 {
        if e.boot == self.clock.boot {
            self.clock.ms(Instant::now()).saturating_sub(e.mono_ms)
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            now.saturating_sub(e.collected_at_ms).max(0) as u64
        }
    }

    fn drop_entry(&mut self, e: Entry, reason: GapReason, gaps: &mut Gaps) {
        let popped = self.pending.pop_front();
        debug_assert_eq!(popped.map(|p| p.seq), Some(e.seq));
        self.stats.dropped_batches += 1;
        add_gap(
            gaps,
            reason,
            Gap::one(e.seq, u64::from(e.size), e.collected_at_ms),
        );
        // A dropped batch may itself carry the report of an earlier gap; keep it.
        for (r, g) in self.carried.remove(&e.seq).unwrap_or_default() {
            add_gap(gaps, r, g);
        }
        if self.last_body.as_ref().is_some_and(|(s, _)| *s == e.seq) {
            self.last_body = None;
        }
    }

    fn roll(&mut self) -> io::Result<()> {
        let id = self.segments.back().map_or(1, |s| s.id + 1);
        self.tail = create_segment(&self.dir, id)?;
        self.segments.push_back(Segment {
            id,
            bytes: 0,
            max_seq: 0,
        });
        Ok(())
    }

    fn write_mark(&mut self, sync: bool) -> io::Result<()> {
        let mut payload = Vec::with_capacity(17);
        payload.push(KIND_MARK);
        payload.extend_from_slice(&self.next_seq.to_le_bytes());
        payload.extend_from_slice(&self.done_seq.to_le_bytes());
        self.write_record(&payload, sync)
    }

    fn write_record(&mut self, payload: &[u8], sync: bool) -> io::Result<()> {
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        self.tail.write_all(&record)?;
        if sync {
            self.tail.sync_data()?;
        }
        self.segments.back_mut().expect("tail segment").bytes += record.len() as u64;
        Ok(())
    }

    /// Removes old segments that hold no pending batch.
    fn collect_garbage(&mut self) {
        let oldest_pending = self.pending.front().map(|e| e.segment);
        while self.segments.len() > 1 {
            let seg = &self.segments[0];
            if oldest_pending.is_some_and(|id| id <= seg.id) {
                break;
            }
            let id = seg.id;
            match fs::remove_file(segment_path(&self.dir, id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    eprintln!("warn: removing spool segment {id}: {e}");
                    break;
                }
            }
            self.segments.pop_front();
        }
    }
}

fn merge_gaps(into: &mut Gaps, from: &Gaps) {
    for (r, g) in from {
        add_gap(into, *r, *g);
    }
}

fn encode_with_gaps(encoder: &mut Encoder, batch: &Batch, gaps: &Gaps) -> Vec<u8> {
    if gaps.is_empty() {
        return encoder.encode(batch);
    }
    let mut b = batch.clone();
    b.events
        .extend(gaps.iter().map(|(reason, gap)| gap.event(*reason)));
    encoder.encode(&b)
}

/// Encodes batches like [`yunwei_proto::encode_batch`] (gzip JSON, fast level), keeping the
/// compressor between batches: allocating and clearing its tables costs about ten times more
/// CPU than compressing a batch.
#[derive(Debug)]
pub struct Encoder {
    deflate: flate2::Compress,
    json: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            deflate: flate2::Compress::new(flate2::Compression::fast(), false),
            json: Vec::new(),
        }
    }
}

impl Encoder {
    pub fn encode(&mut self, batch: &Batch) -> Vec<u8> {
        self.json.clear();
        serde_json::to_writer(&mut self.json, batch).expect("a batch always serializes");
        self.deflate.reset();
        // gzip: header (no name, no time, unknown OS), raw deflate, CRC-32 and length.
        let mut out = Vec::with_capacity(self.json.len() / 4 + 64);
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        loop {
            out.reserve(out.len().max(1024));
            let before = self.deflate.total_in() as usize;
            let status = self
                .deflate
                .compress_vec(
                    &self.json[before..],
                    &mut out,
                    flate2::FlushCompress::Finish,
                )
                .expect("deflate into a Vec cannot fail");
            if status == flate2::Status::StreamEnd {
                break;
            }
        }
        out.extend_from_slice(&crc32fast::hash(&self.json).to_le_bytes());
        out.extend_from_slice(&(self.json.len() as u32).to_le_bytes());
        out
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.seg"))
}

fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(segment_path(dir, id))?;
    // Make the new file's name durable before records in it are relied on.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// The payload of a well-formed record, or `None`.
fn check_record(record: &[u8]) -> Option<&[u8]> {
    if record.len() < HEADER || &record[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(record[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(record[8..12].try_into().ok()?);
    if len > MAX_PAYLOAD || record.len() < HEADER + len {
        return None;
    }
    let payload = &record[HEADER..HEADER + len];
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// Calls `f(offset, record size, payload)` for every well-formed record in `data`; `f` returns
/// false for a payload it cannot decode. Damaged regions are skipped (reading resumes at the next
/// valid record) and counted in `stats`, and so are records `f` refused.
fn scan(data: &[u8], stats: &mut SpoolStats, mut f: impl FnMut(u64, u32, &[u8]) -> bool) {
    let mut at = 0;
    while at < data.len() {
        if let Some(payload) = check_record(&data[at..]) {
            let size = HEADER + payload.len();
            if !f(at as u64, size as u32, payload) {
                stats.corrupt_records += 1;
                stats.corrupt_bytes += size as u64;
            }
            at += size;
            continue;
        }
        // Damaged: look for the next record that checks out.
        let start = at;
        at += 1;
        while at < data.len() {
            if data[at..].starts_with(MAGIC) && check_record(&data[at..]).is_some() {
                break;
            }
            at += 1;
        }
        stats.corrupt_records += 1;
        stats.corrupt_bytes += (at - start) as u64;
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Fixed part of a batch record payload: kind, seq, collected_at_ms, boot, mono_ms,
/// encoded_age_ms, drop_through, gap count; then 49 bytes per gap.
const BATCH_META_FIXED: usize = 1 + 8 * 6 + 1;
const GAP_LEN: usize = 1 + 8 * 6;

fn batch_meta_len(gaps: &Gaps) -> usize {
    BATCH_META_FIXED + GAP_LEN * gaps.len()
}

fn encode_batch_meta(m: &BatchMeta) -> Vec<u8> {
    let mut v = Vec::with_capacity(BATCH_META_FIXED + GAP_LEN * m.gaps.len());
    v.push(KIND_BATCH);
    for x in [
        m.seq,
        m.collected_at_ms as u64,
        m.boot,
        m.mono_ms,
        m.encoded_age_ms,
        m.drop_through,
    ] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.push(m.gaps.len() as u8);
    for (reason, g) in &m.gaps {
        v.push(*reason as u8);
        for x in [
            g.batches,
            g.bytes,
            g.first_seq,
            g.last_seq,
            g.from_ms as u64,
            g.to_ms as u64,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v
}

/// Decodes a batch record payload into its metadata and the offset of the body.
fn decode_batch_meta(p: &[u8]) -> Option<(BatchMeta, usize)> {
    if p.len() < BATCH_META_FIXED || p[0] != KIND_BATCH {
        return None;
    }
    let n = p[BATCH_META_FIXED - 1] as usize;
    let body_at = BATCH_META_FIXED + GAP_LEN * n;
    if p.len() < body_at {
        return None;
    }
    let mut gaps = Vec::with_capacity(n);
    for i in 0..n {
        let at = BATCH_META_FIXED + GAP_LEN * i;
        let reason = GapReason::from_u8(p[at])?;
        gaps.push((
            reason,
            Gap {
                batches: u64_at(p, at + 1),
                bytes: u64_at(p, at + 9),
                first_seq: u64_at(p, at + 17),
                last_seq: u64_at(p, at + 25),
                from_ms: u64_at(p, at + 33) as i64,
                to_ms: u64_at(p, at + 41) as i64,
            },
        ));
    }
    Some((
        BatchMeta {
            seq: u64_at(p, 1),
            collected_at_ms: u64_at(p, 9) as i64,
            boot: u64_at(p, 17),
            mono_ms: u64_at(p, 25),
            encoded_age_ms: u64_at(p, 33),
            drop_through: u64_at(p, 41),
            gaps,
        },
        body_at,
    ))
}

/// Gap events in a batch, as `(reason, gap)`; for tests and tools.
pub fn gaps_of(batch: &Batch) -> Vec<(GapReason, Gap)> {
    batch
        .events
        .iter()
        .filter_map(|e| match e {
            Event::SpoolGap {
                dropped_batches,
                dropped_bytes,
                first_seq,
                last_seq,
                from_ms,
                to_ms,
                reason,
            } => Some((
                GapReason::from_str(reason),
                Gap {
                    batches: *dropped_batches,
                    bytes: *dropped_bytes,
                    first_seq: *first_seq,
                    last_seq: *last_seq,
                    from_ms: *from_ms,
                    to_ms: *to_ms,
                },
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunwei_proto::{HostFacts, Sample};

    const T0: i64 = 1_700_000_000_000;

    fn batch(ts_ms: i64, samples: usize) -> Batch {
        Batch {
            version: 1,
            agent_id: "a".into(),
            seq: 0,
            interval_ms: 15_000,
            collected_at_ms: ts_ms,
            age_ms: 0,
            host: HostFacts {
                hostname: "h".into(),
                ..Default::default()
            },
            samples: (0..samples)
                .map(|i| Sample {
                    name: "m".into(),
                    labels: BTreeMap::from([("i".to_string(), format!("{i}-{ts_ms}"))]).into(),
                    value: i as f64,
                    ts_ms,
                })
                .collect(),
            events: vec![],
            probe_intervals_ms: Default::default(),
        }
    }

    fn limits(max_bytes: u64) -> SpoolLimits {
        SpoolLimits {
            max_bytes,
            max_age: Duration::from_secs(3600),
        }
    }

    fn open(dir: &Path, max_bytes: u64) -> Spool {
        Spool::open(dir, limits(max_bytes), 1, MonoClock::new()).unwrap()
    }

    fn append(s: &mut Spool, ts_ms: i64) -> u64 {
        s.append(&mut batch(ts_ms, 3), Instant::now(), ts_ms)
            .unwrap()
    }

    /// Sends everything: `(seq, gaps)` of each batch, in order.
    fn drain(s: &mut Spool) -> Vec<(u64, Vec<(GapReason, Gap)>)> {
        let mut out = Vec::new();
        while let Some(o) = s.front() {
            let b = decode_batch(&o.body, 1 << 20).unwrap();
            assert_eq!(b.seq, o.seq);
            out.push((o.seq, gaps_of(&b)));
            s.complete_front().unwrap();
        }
        out
    }

    fn seqs(v: &[(u64, Vec<(GapReason, Gap)>)]) -> Vec<u64> {
        v.iter().map(|(s, _)| *s).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn batches_survive_a_restart_and_acked_ones_do_not_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.next_seq(), 1);
        for i in 0..5 {
            assert_eq!(append(&mut s, T0 + i * 1000), i as u64 + 1);
        }
        let out = s.front().unwrap();
        assert_eq!(out.seq, 1);
        s.complete_front().unwrap();
        s.complete_front().unwrap();
        drop(s); // like a crash: nothing is flushed on drop

        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.len(), 3);
        assert_eq!(s.next_seq(), 6);
        assert_eq!(s.stats(), SpoolStats::default());
        assert_eq!(seqs(&drain(&mut s)), [3, 4, 5]);
        append(&mut s, T0 + 10_000);
        drop(s);
        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(seqs(&drain(&mut s)), [6]);
        drop(s);
        // Everything acked: only the newest segment remains, holding the sequence number.
        let s = open(dir.path(), 1 << 20);
        assert_eq!(s.next_seq(), 7);
        assert!(s.is_empty());
        assert!(segment_files(dir.path()).len() <= 2, "old segments removed");
    }

    #[test]
    fn an_empty_spool_starts_at_the_fallback_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), limits(1 << 20), 41, MonoClock::new()).unwrap();
        assert_eq!(s.next_seq(), 41);
    }

    #[test]
    fn a_torn_tail_is_skipped_and_counted_and_its_number_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..3 {
            append(&mut s, T0 + i * 1000);
        }
        drop(s);
        let seg = segment_files(dir.path()).pop().unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        // Cut the last record in the middle, as a power loss during the write would.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 40).unwrap();
        drop(f);

        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.stats().corrupt_records, 1);
        assert!(s.stats().corrupt_bytes > 0);
        assert_eq!(s.stats().dropped_batches, 0, "never synced, so not a gap");
        assert_eq!(
            s.next_seq(),
            3,
            "the torn batch was never sent: its number is reused"
        );
        append(&mut s, T0 + 5000);
        let out = drain(&mut s);
        assert_eq!(seqs(&out), [1, 2, 3]);
        assert!(out.iter().all(|(_, g)| g.is_empty()));
    }

    #[test]
    fn a_damaged_record_in_the_middle_is_skipped_and_reported_as_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..4 {
            append(&mut s, T0 + i * 1000);
        }
        let second = s.pending[1];
        drop(s);
        let seg = segment_files(dir.path()).pop().unwrap();
        let mut data = fs::read(&seg).unwrap();
        data[second.offset as usize + HEADER + 60] ^= 0xff;
        fs::write(&seg, &data).unwrap();

        let mut s = open(dir.path(), 1 << 20);
        assert_eq!(s.stats().corrupt_records, 1);
        assert_eq!(s.stats().dropped_batches, 1);
        assert_eq!(s.next_seq(), 5);
        append(&mut s, T0 + 9000);
        let out = drain(&mut s);
        assert_eq!(seqs(&out), [1, 3, 4, 5]);
        let gap = &out[3].1;
        assert_eq!(gap.len(), 1, "{gap:?}");
        assert_eq!(gap[0].0, GapReason::Corrupt);
        assert_eq!((gap[0].1.first_seq, gap[0].1.last_seq), (2, 2));
        assert_eq!((gap[0].1.from_ms, gap[0].1.to_ms), (T0, T0 + 2000));
        drop(s);
        // Reported once: after a restart the same damage is not reported again.
        let mut s = open(dir.path(), 1 << 20);
        append(&mut s, T0 + 10_000);
        assert!(drain(&mut s).iter().all(|(_, g)| g.is_empty()));
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_segments_and_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 << 10;
        let mut s = open(dir.path(), max);
        for i in 0..200 {
            s.append(&mut batch(T0 + i * 1000, 20), Instant::now(), T0 + i * 1000)
                .unwrap();
            assert!(s.bytes() <= max, "{} > {max}", s.bytes());
        }
        let dropped = s.stats().dropped_batches;
        assert!(dropped > 0);
        let pending = s.len() as u64;
        drop(s);
        let mut s = open(dir.path(), max);
        assert_eq!(s.len() as u64, pending, "drops are durable");
        let out = drain(&mut s);
        let reported: u64 = out
            .iter()
            .flat_map(|(_, g)| g)
            .inspect(|(r, _)| assert_eq!(*r, GapReason::Full))
            .map(|(_, g)| g.batches)
            .sum();
        // Gaps carried by batches that were themselves dropped are folded into later ones, so
        // every dropped batch is reported exactly once by what is delivered.
        assert_eq!(reported + pending, 200, "{out:?}");
        assert_eq!(reported, dropped);
        // The reported ranges are disjoint and hold no delivered batch.
        let mut ranges: Vec<(u64, u64)> = out
            .iter()
            .flat_map(|(seq, g)| g.iter().map(move |(_, g)| (g.first_seq, g.last_seq, *seq)))
            .inspect(|(_, last, carrier)| assert!(last < carrier))
            .map(|(a, b, _)| (a, b))
            .collect();
        ranges.sort();
        assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "{ranges:?}");
        for (seq, _) in &out {
            assert!(!ranges.iter().any(|(a, b)| (a..=b).contains(&seq)));
        }
    }

    #[test]
    fn batches_older_than_the_age_bound_are_dropped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        for i in 0..3 {
            append(&mut s, T0 + i * 1000);
        }
        // An hour and a bit later, the first two are too old.
        let later = T0 + 3_600_000 + 1500;
        s.append(&mut batch(later, 1), Instant::now(), later)
            .unwrap();
        let out = drain(&mut s);
        assert_eq!(seqs(&out), [3, 4]);
        let (reason, gap) = out[1].1[0];
        assert_eq!(reason, GapReason::MaxAge);
        assert_eq!((gap.batches, gap.first_seq, gap.last_seq), (2, 1, 2));
        assert_eq!((gap.from_ms, gap.to_ms), (T0, T0 + 1000));
    }

    #[test]
    fn ages_are_brought_up_to_date_when_sending() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path(), 1 << 20);
        let collected = Instant::now() - Duration::from_secs(3);
        s.append(&mut batch(T0, 1), collected, T0).unwrap();
        let b = decode_batch(&s.front().unwrap().body, 1 << 20).unwrap();
        assert!((2990..4000).contains(&b.age_ms), "{}", b.age_ms);
        drop(s);
        let mut s = open(dir.path(), 1 << 20);
        let b = decode_batch(&s.front().unwrap().body, 1 << 20).unwrap();
        assert!(
            (2990..4000).contains(&b.age_ms),
            "after a restart: {}",
            b.age_ms
        );
    }

    #[test]
    fn the_reused_encoder_matches_the_protocol_codec() {
        let mut enc = Encoder::default();
        for n in [0, 1, 500] {
            let b = batch(T0, n);
            let ours = enc.encode(&b);
            assert_eq!(decode_batch(&ours, 1 << 24).unwrap(), b);
            // Same JSON inside as the protocol's own encoder.
            let theirs = yunwei_proto::encode_batch(&b);
            assert_eq!(
                yunwei_proto::gunzip_limited(&ours, 1 << 24).unwrap(),
                yunwei_proto::gunzip_limited(&theirs, 1 << 24).unwrap()
            );
        }
    }

    #[test]
    fn record_metadata_round_trips() {
        let meta = BatchMeta {
            seq: 7,
            collected_at_ms: -5,
            boot: u64::MAX,
            mono_ms: 1,
            encoded_age_ms: 2,
            drop_through: 6,
            gaps: vec![(GapReason::MaxAge, Gap::one(3, 4, -1))],
        };
        let mut p = encode_batch_meta(&meta);
        p.extend_from_slice(b"body");
        let (back, at) = decode_batch_meta(&p).unwrap();
        assert_eq!(&p[at..], b"body");
        assert_eq!(format!("{back:?}"), format!("{meta:?}"));
        assert!(decode_batch_meta(&p[..10]).is_none());
    }
}
