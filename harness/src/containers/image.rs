//! kubeyard's images, built locally since no registry can be reached: `FROM scratch` with
//! one program and exactly the shared libraries it loads, at the paths it loads them from.
//! `kubeyard/kubeyard` holds this very binary (every component, the node agent and the
//! built-in `kubeyard/echo` workload are subcommands of it); `kubeyard/etcd` the host's
//! etcd (Debian's `etcd-server`). Each is tagged with its version and a hash of its
//! content, so an image is built again only when what goes into it changed.

use super::docker::{self, Docker};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "no etcd binary: install Debian's etcd-server (apt-get install etcd-server), or name one with --etcd-binary"
    )]
    NoEtcd,
    #[error("no kubeyard binary to put in the image: put `kubeyard` on the PATH or name it (KUBEYARD_BINARY)")]
    NoKubeyard,
    #[error("cannot find the libraries {program} needs: {message}")]
    Libraries { program: String, message: String },
    #[error(transparent)]
    Docker(#[from] docker::Error),
}

/// One image: a program, what it needs, and the tag that names that content.
#[derive(Debug, Clone)]
pub struct Image {
    pub tag: String,
    program: PathBuf,
    /// Where the program goes in the image.
    entry: String,
    /// Each library by its path in the image, and the host file it is.
    libraries: BTreeMap<String, PathBuf>,
}

/// The program interpreter an ELF executable names (`/lib64/ld-linux-x86-64.so.2`): the
/// loader must sit at exactly that path, whatever the host's symlinks make of it.
fn interpreter(elf: &[u8]) -> Option<String> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    // 64-bit little-endian ELF only: what kubeyard is built as.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (table, size, count) = (u64_at(0x20)? as usize, u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    (0..count).find_map(|i| {
        let header = table + i * size;
        // PT_INTERP
        if u32_at(header)? != 3 {
            return None;
        }
        let (offset, length) = (u64_at(header + 8)? as usize, u64_at(header + 32)? as usize);
        let path = elf.get(offset..offset + length)?;
        Some(String::from_utf8_lossy(path).trim_end_matches('\0').to_string())
    })
}

/// The libraries at their host paths, and the loader also at the path the program names.
fn placed(program: &[u8], libraries: BTreeSet<PathBuf>) -> BTreeMap<String, PathBuf> {
    let mut placed: BTreeMap<String, PathBuf> =
        libraries.iter().map(|l| (l.display().to_string(), l.clone())).collect();
    if let Some(interpreter) = interpreter(program) {
        let name = Path::new(&interpreter).file_name().map(|n| n.to_os_string());
        let canonical = std::fs::canonicalize(&interpreter).ok();
        let loader = libraries
            .iter()
            .find(|l| Some(*l) == canonical.as_ref() || l.file_name().map(|n| n.to_os_string()) == name);
        if let Some(loader) = loader {
            placed.insert(interpreter, loader.clone());
        }
    }
    placed
}

/// The shared libraries this process has mapped (the dynamic loader among them): exactly
/// what the binary needs, whatever the host's layout.
fn own_libraries() -> Result<BTreeSet<PathBuf>, Error> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|source| Error::Read { path: "/proc/self/maps".into(), source })?;
    Ok(maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && (path.ends_with(".so") || path.contains(".so.")))
        .map(PathBuf::from)
        .collect())
}

/// What `ldd` says another program needs.
fn libraries_of(program: &Path) -> Result<BTreeSet<PathBuf>, Error> {
    let failed = |message: String| Error::Libraries { program: program.display().to_string(), message };
    let output = Command::new("ldd").arg(program).output().map_err(|e| failed(format!("ldd: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(BTreeSet::new());
    }
    if !output.status.success() {
        return Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and the loader's own line,
    // `/lib64/ld-linux-x86-64.so.2 (0x...)`.
    Ok(text
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

/// The first 12 hex digits of SHA-256 over the files, in order, each with its path.
fn content_hash(files: &[(String, Vec<u8>)]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for (path, bytes) in files {
        context.update(path.as_bytes());
        context.update(&(bytes.len() as u64).to_le_bytes());
        context.update(bytes);
    }
    context.finish().as_ref().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl Image {
    /// The kubeyard binary (`binary`, else this one when it is `kubeyard`, else `kubeyard`
    /// on the PATH: a test binary using the Rust API is not it), as
    /// `kubeyard/kubeyard:<version>-<hash>`.
    pub fn kubeyard(binary: Option<&Path>) -> Result<Image, Error> {
        let current =
            std::env::current_exe().map_err(|source| Error::Read { path: "/proc/self/exe".into(), source })?;
        let is_kubeyard = |path: &Path| path.file_name().is_some_and(|n| n == "kubeyard");
        let program = match binary {
            Some(path) => path.to_path_buf(),
            None if is_kubeyard(&current) => current.clone(),
            None => crate::discover::program_on_path("kubeyard").ok_or(Error::NoKubeyard)?,
        };
        // This process's own libraries are exactly what it loaded; another program's are
        // what the loader would find for it.
        let same = std::fs::canonicalize(&program).ok() == std::fs::canonicalize(&current).ok();
        let libraries = if same { own_libraries()? } else { libraries_of(&program)? };
        let libraries = placed(&read(&program)?, libraries);
        Image { tag: String::new(), program, entry: "/kubeyard".into(), libraries }
            .tagged("kubeyard/kubeyard", env!("CARGO_PKG_VERSION"))
    }

    /// The host's etcd (`--etcd-binary`, else `etcd` on the PATH), as
    /// `kubeyard/etcd:<version>-<hash>`.
    pub fn etcd(binary: Option<&Path>) -> Result<Image, Error> {
        let program = match binary {
            Some(path) => path.to_path_buf(),
            None => crate::discover::program_on_path("etcd").ok_or(Error::NoEtcd)?,
        };
        let version = Command::new(&program)
            .arg("--version")
            .output()
            .ok()
            .and_then(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("etcd Version: ").map(|v| v.trim().to_string()))
            })
            .unwrap_or_else(|| "unknown".into());
        let libraries = placed(&read(&program)?, libraries_of(&program)?);
        Image { tag: String::new(), program, entry: "/etcd".into(), libraries }.tagged("kubeyard/etcd", &version)
    }

    /// Names the image by its content.
    fn tagged(mut self, repository: &str, version: &str) -> Result<Image, Error> {
        let files = self.files()?;
        self.tag = format!("{repository}:{version}-{}", content_hash(&files));
        Ok(self)
    }

    /// Every file of the image, by its path in it.
    fn files(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut files = vec![(self.entry.clone(), read(&self.program)?)];
        for (path, library) in &self.libraries {
            files.push((path.clone(), read(library)?));
        }
        Ok(files)
    }

    /// The build context: the files under `rootfs/`, and a Dockerfile copying them in.
    fn context(&self) -> Result<Vec<u8>, Error> {
        let dockerfile = format!(
            "FROM scratch\nCOPY rootfs/ /\nLABEL kubeyard.dev/image={}\nENTRYPOINT [\"{}\"]\n",
            self.tag, self.entry
        );
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, bytes: &[u8], mode: u32| -> std::io::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(mode);
            header.set_cksum();
            builder.append_data(&mut header, path, bytes)
        };
        let io = |source| Error::Read { path: PathBuf::from("(build context)"), source };
        add("Dockerfile", dockerfile.as_bytes(), 0o644).map_err(io)?;
        for (path, bytes) in self.files()? {
            add(&format!("rootfs{path}"), &bytes, 0o755).map_err(io)?;
        }
        builder.into_inner().map_err(io)
    }

    /// Builds the image unless one with this tag exists, and then removes the older
    /// builds of the same repository that no container uses; whether it was built.
    pub async fn ensure(&self, docker: &Docker) -> Result<bool, Error> {
        if docker.image_exists(&self.tag).await {
            return Ok(false);
        }
        // Two runs building at once (tests in parallel, two terminals) would each tag an
        // image of their own and prune the other's from under its containers: one builds
        // while the other waits, then finds the image there.
        let _lock = build_lock().await?;
        if docker.image_exists(&self.tag).await {
            return Ok(false);
        }
        docker.build(&self.tag, self.context()?).await?;
        let repository = self.tag.split(':').next().unwrap_or_default();
        // A build of another binary made a moment ago may be about to get its containers
        // (another checkout's tests, at once): only builds older than this go.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        for (old, created) in docker.image_tags(repository).await.unwrap_or_default() {
            // `latest` is the user's (`kubeyard image build` sets it, `docker run` uses it).
            if old != self.tag && !old.ends_with(":latest") && now - created > PRUNE_AFTER_SECONDS {
                // One still in use by a running cluster stays; the engine says so.
                let _ = docker.remove_image(&old).await;
            }
        }
        Ok(true)
    }

    /// How many bytes go into the image.
    pub fn size(&self) -> u64 {
        std::iter::once(&self.program)
            .chain(self.libraries.values())
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// How old another build of an image must be before a new build removes it.
const PRUNE_AFTER_SECONDS: i64 = 600;

/// An exclusive lock on the machine's image builds, held until dropped (an flock on a
/// file in the temporary directory: released by the kernel if the holder dies).
async fn build_lock() -> Result<std::fs::File, Error> {
    let path = std::env::temp_dir().join("kubeyard-image-build.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Read { path: path.clone(), source })?;
    tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; it blocks this thread only.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if locked == 0 { Ok(file) } else { Err(Error::Read { path, source: std::io::Error::last_os_error() }) }
    })
    .await
    .map_err(|e| Error::Read { path: PathBuf::from("(image build lock)"), source: std::io::Error::other(e) })?
}

/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Builds `tag`: Debian's static busybox `FROM scratch`, its shell as the entrypoint and
/// the applets tests and benchmarks use as links, unless the engine has it already. The
/// stand-in for a user's own image, built with no registry.
pub async fn busybox(docker: &Docker, tag: &str) -> Result<(), String> {
    if docker.has_image(tag).await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    let binary = std::fs::read(BUSYBOX)
        .map_err(|e| format!("{BUSYBOX}: {e} (Debian's busybox-static: scripts/setup installs it)"))?;
    let mut context = tar::Builder::new(Vec::new());
    let mut add = |path: &str, bytes: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        context.append_data(&mut header, path, bytes)
    };
    let written = add("Dockerfile", b"FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/bin/sh\"]\n", 0o644)
        .and_then(|()| add("rootfs/bin/busybox", &binary, 0o755))
        .and_then(|()| add("rootfs/tmp/.keep", b"", 0o644));
    written.map_err(|e| e.to_string())?;
    let applets = ["sh", "httpd", "wget", "echo", "cat", "sleep", "head", "tail", "mkdir", "ls", "id", "tar", "stty"];
    for applet in applets {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        context.append_link(&mut header, format!("rootfs/bin/{applet}"), "busybox").map_err(|e| e.to_string())?;
    }
    let context = context.into_inner().map_err(|e| e.to_string())?;
    docker.build(tag, context).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binary_needs_the_loader_and_libc() {
        let libraries = own_libraries().unwrap();
        assert!(libraries.iter().any(|l| l.to_string_lossy().contains("libc.so")), "{libraries:?}");
        assert!(libraries.iter().any(|l| l.to_string_lossy().contains("ld-linux")), "{libraries:?}");
    }

    #[test]
    fn the_loader_goes_where_the_program_looks_for_it() {
        let program = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let loader = interpreter(&program).expect("a dynamically linked test binary");
        assert!(loader.contains("ld-linux"), "{loader}");
        let placed = placed(&program, own_libraries().unwrap());
        assert!(placed.contains_key(&loader), "{placed:?}");
        assert_eq!(interpreter(b"not an ELF file at all"), None);
    }

    #[tokio::test]
    async fn builds_take_turns() {
        let first = build_lock().await.unwrap();
        let second = tokio::spawn(build_lock());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!second.is_finished(), "a second build waits for the first");
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), second).await;
        assert!(matches!(second, Ok(Ok(Ok(_)))), "and goes on once it is done");
    }

    #[test]
    fn the_tag_follows_the_content() {
        let one = content_hash(&[("/a".into(), b"x".to_vec())]);
        assert_eq!(one.len(), 12);
        assert_eq!(one, content_hash(&[("/a".into(), b"x".to_vec())]));
        assert_ne!(one, content_hash(&[("/a".into(), b"y".to_vec())]));
        assert_ne!(one, content_hash(&[("/b".into(), b"x".to_vec())]));
    }
}
