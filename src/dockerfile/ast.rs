//! The typed syntax tree of a Dockerfile.
//!
//! Two layers, both produced by [`crate::dockerfile::parse`]:
//!
//! * [`RawNode`] is what the line parser sees, the same split BuildKit's parser makes:
//!   keyword as written, `--flags` (quotes removed), the argument words (raw: no quote
//!   removal, no `$VAR` expansion), heredocs, the span and the original text. It prints as
//!   BuildKit's dump format ([`RawNode::dump`]).
//! * [`Instruction`] is the meaning: one enum variant per instruction with typed flags.
//!   String fields hold the **raw, unexpanded** words; the planner expands them
//!   (`dockerfile::expand`) with the ARG/ENV scope of their stage.
//!
//! ```text
//! COPY --from=build --chmod=755 a b /dst/
//! ^^^^ keyword       ^^^^^^^^^^^ flags  ^^^^^^^^ args
//! ^------------------------------------------^  span (1-based line/col, end exclusive)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// A position in the Dockerfile: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

/// A region of the Dockerfile. `end` points just past the last character; `end.line` is the
/// last line the instruction occupies (continuation lines, blank and comment lines inside
/// a continuation, and heredoc bodies with their terminator all count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

impl Span {
    pub fn start_line(&self) -> usize {
        self.start.line
    }
    pub fn end_line(&self) -> usize {
        self.end.line
    }
}

/// A value with the place it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spanned<T> {
    pub span: Span,
    pub value: T,
}

/// Parser directives from the top of the file (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    pub syntax: Option<Spanned<String>>,
    /// The escape character: `\` (default) or `` ` ``.
    pub escape: char,
    pub check: Option<Spanned<String>>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives { syntax: None, escape: '\\', check: None }
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dockerfile {
    /// The path given to `parse` (used in error messages).
    pub path: PathBuf,
    pub directives: Directives,
    /// `ARG` instructions before the first `FROM` (usable in `FROM` lines).
    pub global_args: Vec<Node>,
    pub stages: Vec<Stage>,
}

/// One build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// 0-based position among the stages (`COPY --from=0`).
    pub index: usize,
    /// The `AS name`, lower-cased as Docker does (`None` without `AS`).
    pub name: Option<String>,
    /// The `FROM` line itself (its `instruction` is always [`Instruction::From`]).
    pub from_node: Node,
    pub from: From,
    /// The instructions after `FROM`, in file order.
    pub instructions: Vec<Node>,
}

/// One instruction: the raw line split and the typed meaning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub raw: RawNode,
    pub instruction: Instruction,
}

impl Node {
    pub fn span(&self) -> Span {
        self.raw.span
    }
    /// The instruction as written, continuations joined (BuildKit's `Original`); what
    /// image history shows in `created_by`.
    pub fn original(&self) -> &str {
        &self.raw.original
    }
}

/// The line parser's view of an instruction (BuildKit's `parser.Node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawNode {
    pub span: Span,
    /// The logical line: continuation characters removed, lines joined, comment and blank
    /// lines inside the continuation dropped, surrounding whitespace trimmed.
    pub original: String,
    /// The keyword as written (`run`, `Run`, `RUN`).
    pub keyword: String,
    /// The `--flags` before the arguments, quotes removed, `--` kept (`--from=build`).
    pub flags: Vec<String>,
    /// The argument words, split the way BuildKit does for this instruction (see the
    /// conformance README, section 1.2). Empty for ONBUILD (see `onbuild`).
    pub args: Vec<String>,
    /// True when the arguments were a JSON array (exec form).
    pub json: bool,
    /// Heredocs opened on this line (RUN, COPY, ADD in shell form), in order.
    pub heredocs: Vec<Heredoc>,
    /// ONBUILD's nested instruction.
    pub onbuild: Option<Box<RawNode>>,
}

/// A heredoc: `<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter with quotes removed (`EOF`).
    pub name: String,
    /// The body, each line ending in `\n` (CRLF turned into LF), terminator excluded. For
    /// `<<-` the leading tabs of every line are already stripped.
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no variable expansion.
    pub expand: bool,
    /// `<<-`: leading tabs stripped from body lines and the terminator.
    pub chomp: bool,
    /// The file descriptor before `<<` (`3<<EOF`), if any.
    pub fd: Option<u32>,
    /// Where the `<<` marker is.
    pub span: Span,
}

/// The typed meaning of an instruction. All strings are raw (unexpanded).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Label(KeyValues),
    Maintainer(Text),
    Expose(Words),
    Env(KeyValues),
    Add(Add),
    Copy(Copy),
    Entrypoint(CommandLine),
    Volume(Words),
    User(Text),
    Workdir(Text),
    Arg(Args),
    Onbuild(Onbuild),
    Stopsignal(Text),
    Healthcheck(Healthcheck),
    Shell(Words),
}

impl Instruction {
    /// The canonical upper-case keyword (`RUN`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
        }
    }
}

/// A single raw string argument (USER, WORKDIR, STOPSIGNAL, MAINTAINER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    pub value: String,
}

/// A list of raw words (EXPOSE, VOLUME, SHELL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Words {
    pub words: Vec<String>,
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The image reference, raw (may hold `$ARG`s), or `scratch`, or a stage name.
    pub image: String,
    /// The stage name from `AS name`, lower-cased.
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// Shell form (`RUN echo hi`) or exec form (`RUN ["echo", "hi"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "lowercase")]
pub enum CommandLine {
    /// The whole argument text, unsplit, as written (continuations joined).
    Shell(String),
    /// The JSON array's strings, decoded.
    Exec(Vec<String>),
}

impl CommandLine {
    pub fn is_empty(&self) -> bool {
        match self {
            CommandLine::Shell(s) => s.is_empty(),
            CommandLine::Exec(v) => v.is_empty(),
        }
    }
}

/// `RUN [--mount=...]... [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub command: CommandLine,
    /// Heredocs opened on the line. When the command is just `<<EOF` the first heredoc's
    /// body is the script; otherwise the bodies are fed to the command (see Docker docs).
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: Option<NetworkMode>,
    pub security: Option<Security>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Sandbox,
    Insecure,
}

/// `RUN --mount=type=...,key=value,...`. Paths and ids stay raw (they may hold `$ARG`s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Mount {
    /// `type=bind` (the default): a read-only (unless `rw`) view of the context or of
    /// `from` (a stage or image).
    Bind { target: String, source: Option<String>, from: Option<String>, readwrite: bool },
    /// `type=cache`: a persistent directory keyed by `id` (default: the target).
    Cache {
        target: String,
        id: Option<String>,
        sharing: CacheSharing,
        from: Option<String>,
        source: Option<String>,
        readonly: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// `type=tmpfs`.
    Tmpfs { target: String, size: Option<String> },
    /// `type=secret`: a file (default `/run/secrets/<id>`) or an env variable.
    Secret {
        id: Option<String>,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// `type=ssh`: an SSH agent socket.
    Ssh {
        id: Option<String>,
        target: Option<String>,
        required: bool,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    },
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// A source of COPY/ADD: a path (raw; may be a URL or git ref for ADD) or a heredoc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Source {
    Path(String),
    Heredoc(Heredoc),
}

/// `COPY [--from=] [--chown=] [--chmod=] [--link] [--parents] [--exclude=]... src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// The sources and dest came from a JSON array.
    pub json: bool,
}

/// `ADD [--chown=] [--chmod=] [--link] [--keep-git-dir] [--checksum=] [--exclude=]...
/// [--unpack] src... dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    pub sources: Vec<Source>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub exclude: Vec<String>,
    /// `--unpack[=bool]`: `None` means Docker's default (unpack local archives only).
    pub unpack: Option<bool>,
    pub json: bool,
}

/// One `key=value` of ENV or LABEL. Both raw: quotes and escapes are still in them
/// (`"x y"`); expansion removes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// ENV / LABEL pairs. `legacy` is the `ENV key value with spaces` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValues {
    pub pairs: Vec<KeyValue>,
    pub legacy: bool,
}

/// One `ARG name[=default]`. The default is raw (quotes kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// `ARG a b=c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Args {
    pub args: Vec<ArgDecl>,
}

/// `ONBUILD INSTRUCTION`: the trigger, parsed and checked, stored in the image config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Onbuild {
    pub trigger: Box<Instruction>,
    /// The trigger's text as written (goes into the image's `OnBuild` list).
    pub original: String,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD command`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Healthcheck {
    None,
    Cmd {
        command: CommandLine,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}
