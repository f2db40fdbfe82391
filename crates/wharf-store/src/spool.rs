//! A layer's tar as it is extracted: hashed whole, but spooled without the file contents the
//! layer directory receives, so a 300 MB layer is not written to disk a second time just to
//! keep its headers (see `split` for the record made from what is spooled).
//!
//! The extraction tells the spool where each regular file's data lies in the stream
//! ([`Recorder::data`], before the data passes) and which files it wrote
//! ([`Recorder::written`]). Data is only ever lost from the directory by a later entry of the
//! same archive removing or replacing a file an earlier one wrote (a duplicate name, a
//! whiteout, a directory or link put in its place); extraction announces every such removal
//! first ([`Recorder::before_remove`]). At the first one that touches a written file, the
//! spool rebuilds the stream so far from what it kept and the files (all still intact at that
//! moment) and spools everything from there on: the layer is then kept as a whole tar, which
//! the content store verifies against the digest as it stores it.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use wharf_reference::{BackgroundSha256, Digest};

use crate::apply::Recorder;
use crate::split::FileData;

/// What the spool holds: the tar without its file contents, or (after a removal that touched
/// a written file) the whole tar.
pub enum Kept {
    /// The bytes between file contents, in order, and the files whose contents were left out.
    Compact(File, Vec<FileData>),
    /// The whole tar.
    Whole(File),
}

struct State {
    hasher: BackgroundSha256,
    out: BufWriter<File>,
    /// Bytes of the stream passed so far.
    at: u64,
    /// The file data being skipped: `[from, to)` of the stream.
    skip: (u64, u64),
    skipped: u64,
    whole: bool,
    files: Vec<FileData>,
    paths: BTreeSet<PathBuf>,
    dir: PathBuf,
    scratch: Box<dyn FnMut() -> io::Result<File>>,
    failed: Option<io::Error>,
}

/// The reading side: hands the stream on and keeps what is to be kept.
pub struct Tee<R> {
    inner: R,
    state: Rc<RefCell<State>>,
}

/// The extraction's side: where file data lies, which files were written, what goes.
pub struct Hooks {
    state: Rc<RefCell<State>>,
}

/// A spool for a layer extracted into `dir`; `scratch` makes an unlinked scratch file.
pub fn spool<R: Read>(
    inner: R,
    dir: &Path,
    mut scratch: Box<dyn FnMut() -> io::Result<File>>,
) -> io::Result<(Tee<R>, Hooks)> {
    let out = BufWriter::with_capacity(1 << 20, scratch()?);
    let state = Rc::new(RefCell::new(State {
        hasher: BackgroundSha256::new(),
        out,
        at: 0,
        skip: (0, 0),
        skipped: 0,
        whole: false,
        files: Vec::new(),
        paths: BTreeSet::new(),
        dir: dir.to_path_buf(),
        scratch,
        failed: None,
    }));
    Ok((
        Tee {
            inner,
            state: state.clone(),
        },
        Hooks { state },
    ))
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut st = self.state.borrow_mut();
        let data = &buf[..n];
        st.hasher.update(data);
        let (from, to) = (st.at, st.at + n as u64);
        // The part of [from, to) outside the skipped file data.
        let (a, b) = (st.skip.0.clamp(from, to), st.skip.1.clamp(from, to));
        if st.whole || a == b {
            st.out.write_all(data)?;
        } else {
            st.out.write_all(&data[..(a - from) as usize])?;
            st.out.write_all(&data[(b - from) as usize..])?;
            st.skipped += b - a;
        }
        st.at = to;
        Ok(n)
    }
}

impl Recorder for Hooks {
    fn data(&mut self, pos: u64, size: u64) {
        let mut st = self.state.borrow_mut();
        // Data starts where the stream is: anything else is kept whole, never guessed at.
        if !st.whole && pos == st.at {
            st.skip = (pos, pos + size);
        }
    }

    fn written(&mut self, f: &FileData) {
        let mut st = self.state.borrow_mut();
        if !st.whole && st.skip == (f.pos, f.pos + f.size) {
            st.paths.insert(f.path.clone());
            st.files.push(f.clone());
        } else if !st.whole {
            // Data that passed unskipped (it cannot be left out): keep everything.
            let r = st.make_whole();
            st.fail_on(r);
        }
    }

    fn before_remove(&mut self, comps: &[&OsStr]) {
        let mut st = self.state.borrow_mut();
        if st.whole {
            return;
        }
        let p: PathBuf = comps.iter().collect();
        let touched = st.paths.range(p.clone()..).next().is_some_and(|q| q.starts_with(&p));
        if touched {
            let r = st.make_whole();
            st.fail_on(r);
        }
    }
}

fn open_beneath(root: &File, path: &Path) -> io::Result<File> {
    let fd = openat2(
        root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?;
    Ok(File::from(fd))
}

impl State {
    fn fail_on(&mut self, r: io::Result<()>) {
        if let Err(e) = r {
            self.failed.get_or_insert(e);
        }
    }

    /// Rebuild the stream so far from the kept bytes and the (still intact) files into a new
    /// scratch file, and keep everything from now on.
    fn make_whole(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let mut kept = self.out.get_ref().try_clone()?;
        kept.seek(SeekFrom::Start(0))?;
        let mut whole = BufWriter::with_capacity(1 << 20, (self.scratch)()?);
        let dir = File::open(&self.dir)?;
        let mut at = 0;
        for f in &self.files {
            copy_exact(&mut kept, &mut whole, f.pos - at)?;
            copy_exact(&mut open_beneath(&dir, &f.path)?, &mut whole, f.size)?;
            at = f.pos + f.size;
        }
        copy_exact(&mut kept, &mut whole, self.at - at)?;
        self.out = whole;
        self.whole = true;
        self.files.clear();
        self.paths.clear();
        Ok(())
    }
}

fn copy_exact(from: &mut impl Read, to: &mut impl Write, n: u64) -> io::Result<()> {
    if io::copy(&mut from.take(n), to)? != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the spooled layer is short",
        ));
    }
    Ok(())
}

impl Hooks {
    /// The stream's digest and length, and what was kept (read from its start).
    pub fn finish(self) -> io::Result<(Digest, u64, Kept)> {
        let st = Rc::try_unwrap(self.state)
            .map_err(|_| io::Error::other("the layer's tar is still being read"))?
            .into_inner();
        if let Some(e) = st.failed {
            return Err(e);
        }
        let len = st.at;
        let mut f = st.out.into_inner().map_err(|e| e.into_error())?;
        f.seek(SeekFrom::Start(0))?;
        let digest = st.hasher.finish()?;
        let kept = if st.whole {
            Kept::Whole(f)
        } else {
            let sizes: u64 = st.files.iter().map(|f| f.size).sum();
            if sizes != st.skipped {
                return Err(io::Error::other("the spool's file data does not add up"));
            }
            Kept::Compact(f, st.files)
        };
        Ok((digest, len, kept))
    }
}
