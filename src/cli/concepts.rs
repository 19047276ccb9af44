//! `edgebind concepts build`: a concept bank from words with the model set's text encoder (no
//! Python); `edgebind concepts match`: the nearest concepts of one input file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ndarray::Axis;
use ndarray_npy::WriteNpyExt;

use super::{InputOptions, ModalityArg, ProviderArg};
use crate::concepts::embed::{EmbedOptions, Residency, TextEmbedder, TextModel};
use crate::concepts::set::{ConceptSet, ConceptSetDef, TextSet};
use crate::concepts::state::atomic_write;
use crate::concepts::{reload, ConceptBank};
use crate::config::ExecutionProviderKind;
use crate::files;
use crate::inference::manifest::{self, Manifest};
use crate::inference::{Encoder, OrtRuntime, TextEncoder};

/// `edgebind concepts …`.
#[derive(Debug, clap::Subcommand)]
pub enum ConceptsCommand {
    /// Embed words with the model set's text encoder into a bank (`concepts.txt` +
    /// `concepts.npy`); when OUT holds a manifest.json (e.g. OUT = --models), its `concepts`
    /// entry and sha256s are updated so the daemon loads the new bank (SIGHUP reloads it).
    Build {
        /// Labels: one per line (blank lines and `#` comments skipped), or a `.json` set
        /// (`{"labels": [...], "template": "...", "aliases": {...}}`).
        labels: PathBuf,
        /// The model set whose text encoder embeds the words.
        #[arg(long)]
        models: PathBuf,
        /// Prompt template with one `{}` (e.g. "a sound of {}").
        #[arg(long)]
        template: Option<String>,
        /// Output directory.
        #[arg(short, long)]
        output: PathBuf,
        /// Labels per encoder run.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
        batch_size: u16,
        /// How to run the encoder.
        #[command(flatten)]
        run: RunArgs,
    },
    /// Print the concepts nearest to one input file.
    Match {
        /// Input file (as for `edgebind embed`), or the text itself.
        input: PathBuf,
        /// Modality of the input.
        #[arg(long)]
        modality: ModalityArg,
        /// The model set.
        #[arg(long)]
        models: PathBuf,
        /// Words to match against instead of the model set's bank: a labels file, a `.json`
        /// set, or comma-separated words ("a dog barking,a smoke alarm").
        #[arg(long)]
        concepts: Option<String>,
        /// Prompt template with one `{}` for --concepts words.
        #[arg(long)]
        template: Option<String>,
        /// Concepts listed.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
        top_k: u16,
        /// Preprocessing options.
        #[command(flatten)]
        options: InputOptions,
        /// How to run the encoders.
        #[command(flatten)]
        run: RunArgs,
    },
}

/// ONNX Runtime options of the `concepts` commands.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Execution providers to try, in order.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    pub providers: Vec<ProviderArg>,
    /// libonnxruntime to load (ORT_DYLIB_PATH wins).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1, value_parser = crate::config::limits::flags::intra_threads)]
    pub threads: usize,
}

impl RunArgs {
    fn providers(&self) -> Vec<ExecutionProviderKind> {
        self.providers.iter().map(|&p| p.into()).collect()
    }
}

/// Runs a `concepts` command.
///
/// # Errors
/// Any input, model or runtime problem, with its context.
pub fn run(command: ConceptsCommand) -> Result<i32> {
    match command {
        ConceptsCommand::Build {
            labels,
            models,
            template,
            output,
            batch_size,
            run,
        } => build(
            &labels,
            &models,
            template,
            &output,
            usize::from(batch_size),
            &run,
        ),
        ConceptsCommand::Match {
            input,
            modality,
            models,
            concepts,
            template,
            top_k,
            options,
            run,
        } => nearest(&MatchArgs {
            input,
            modality,
            models,
            concepts,
            template,
            top_k: usize::from(top_k),
            options,
            run,
        }),
    }
}

/// Reads a labels file (the exporter's format) or a `.json` set.
fn read_set(path: &Path, template: Option<String>) -> Result<TextSet> {
    let text = files::read_to_string(path, files::MAX_TEXT_BYTES, "concept labels")?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let mut def: ConceptSetDef = if is_json {
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?
    } else {
        let labels = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        ConceptSetDef {
            labels,
            ..ConceptSetDef::default()
        }
    };
    if template.is_some() {
        def.template = template;
    }
    match def
        .validate()
        .with_context(|| format!("{}", path.display()))?
    {
        ConceptSet::Text(set) => Ok(set),
        ConceptSet::Precomputed(_) => bail!(
            "{}: holds a precomputed bank, not words to embed",
            path.display()
        ),
    }
}

fn text_model(models: &Path) -> Result<(Manifest, TextModel)> {
    let manifest = Manifest::load(models)?;
    let Some(model) = TextModel::from_manifest(&manifest) else {
        bail!(
            "{}: the model set has no text encoder (no `text` entry); export one with \
             tools/export_imagebind.py, or keep its precomputed bank",
            models.join("manifest.json").display()
        );
    };
    Ok((manifest, model))
}

/// Embeds `set`, logging progress about once a second.
fn embed_set(
    runtime: OrtRuntime,
    model: TextModel,
    set: &TextSet,
    batch_size: usize,
    run: &RunArgs,
) -> Result<crate::concepts::embed::EmbeddedRows> {
    let options = EmbedOptions {
        providers: run.providers(),
        intra_threads: run.threads,
        batch_size,
        residency: Residency::Transient,
    };
    let mut embedder = TextEmbedder::new(runtime, model, options);
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut progress = |done: usize, total: usize| {
        if last.elapsed() >= Duration::from_secs(1) || done == total {
            last = Instant::now();
            tracing::info!("embedded {done}/{total} prompts");
        }
    };
    let rows = embedder.embed(set, &mut progress)?;
    tracing::info!(
        labels = set.labels().len(),
        seconds = format!("{:.1}", t0.elapsed().as_secs_f64()),
        "concepts embedded"
    );
    Ok(rows)
}

#[allow(clippy::print_stdout, reason = "build reports the files it wrote")]
fn build(
    labels: &Path,
    models: &Path,
    template: Option<String>,
    output: &Path,
    batch_size: usize,
    run: &RunArgs,
) -> Result<i32> {
    let set = read_set(labels, template)?;
    let (manifest, model) = text_model(models)?;
    let runtime = OrtRuntime::load(run.ort_library.as_deref())?;
    let rows = embed_set(runtime, model, &set, batch_size, run)?;
    if rows.rows.ncols() != manifest.embedding_dim {
        bail!(
            "{}: the text encoder gives {}-wide embeddings, the model set's are {}",
            models.display(),
            rows.rows.ncols(),
            manifest.embedding_dim
        );
    }
    rows.bank()
        .map_err(|m| anyhow::anyhow!("{}: {m}", labels.display()))?;
    let labels_path = output.join("concepts.txt");
    let npy_path = output.join("concepts.npy");
    let text: String = set.labels().iter().map(|l| format!("{l}\n")).collect();
    let mut npy = Vec::new();
    rows.rows
        .write_npy(&mut npy)
        .with_context(|| format!("writing {}", npy_path.display()))?;
    atomic_write(&labels_path, text.as_bytes())
        .with_context(|| format!("writing {}", labels_path.display()))?;
    atomic_write(&npy_path, &npy).with_context(|| format!("writing {}", npy_path.display()))?;
    let txt_sha = manifest::sha256_file(&labels_path)?;
    let npy_sha = manifest::sha256_file(&npy_path)?;
    println!(
        "{}: {} concepts, sha256 {txt_sha}",
        labels_path.display(),
        set.labels().len()
    );
    println!(
        "{}: [{}, {}] float32, sha256 {npy_sha}",
        npy_path.display(),
        rows.rows.nrows(),
        rows.rows.ncols()
    );
    let manifest_path = output.join("manifest.json");
    if manifest_path.is_file() {
        update_manifest(&manifest_path, &txt_sha, &npy_sha)?;
        println!("{}: concepts entry updated", manifest_path.display());
    }
    Ok(0)
}

/// Points the manifest's `concepts` entry at the new files with their sha256s (other keys kept).
fn update_manifest(path: &Path, txt_sha: &str, npy_sha: &str) -> Result<()> {
    let text = files::read_to_string(path, files::MAX_TEXT_BYTES, "a manifest")?;
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let Some(obj) = doc.as_object_mut() else {
        bail!("{}: not a JSON object", path.display());
    };
    obj.insert(
        "concepts".into(),
        serde_json::json!({
            "labels": "concepts.txt",
            "embeddings": "concepts.npy",
            "sha256": {"concepts.txt": txt_sha, "concepts.npy": npy_sha},
        }),
    );
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    atomic_write(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

struct MatchArgs {
    input: PathBuf,
    modality: ModalityArg,
    models: PathBuf,
    concepts: Option<String>,
    template: Option<String>,
    top_k: usize,
    options: InputOptions,
    run: RunArgs,
}

/// The words of `--concepts`: a file, or comma-separated words.
fn concepts_arg(arg: &str, template: Option<String>) -> Result<TextSet> {
    let path = Path::new(arg);
    if path.is_file() {
        return read_set(path, template);
    }
    let looks_like_file = arg.contains('/')
        || [".txt", ".json"]
            .iter()
            .any(|e| arg.to_ascii_lowercase().ends_with(e));
    if looks_like_file {
        files::readable(path)?;
    }
    let labels = arg
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let def = ConceptSetDef {
        labels,
        template,
        ..ConceptSetDef::default()
    };
    match def.validate().context("--concepts")? {
        ConceptSet::Text(set) => Ok(set),
        ConceptSet::Precomputed(_) => bail!("--concepts: expected words"),
    }
}

#[allow(clippy::print_stdout, reason = "match prints its table")]
fn nearest(args: &MatchArgs) -> Result<i32> {
    let manifest = Manifest::load(&args.models)?;
    let runtime = OrtRuntime::load(args.run.ort_library.as_deref())?;
    let providers = args.run.providers();
    let (embedding, model_path) = input_embedding(args, &manifest, &runtime, &providers)?;
    let (bank, source) = match &args.concepts {
        None => {
            if args.template.is_some() {
                bail!("--template applies to --concepts words");
            }
            let bank = reload::load_bank(&args.models, manifest.embedding_dim)?;
            (bank, format!("the bank of {}", args.models.display()))
        }
        Some(arg) => {
            let set = concepts_arg(arg, args.template.clone())?;
            let (_, model) = text_model(&args.models)?;
            let rows = embed_set(runtime, model, &set, 32, &args.run)?;
            let bank = rows
                .bank()
                .map_err(|m| anyhow::anyhow!("--concepts: {m}"))?;
            (bank, "--concepts".to_string())
        }
    };
    if bank.dim() != embedding.len() {
        bail!(
            "{}: gives {}-wide embeddings, the concepts are {}-wide",
            model_path.display(),
            embedding.len(),
            bank.dim()
        );
    }
    print_table(args, &bank, &embedding, &model_path, &source);
    Ok(0)
}

/// The input's embedding with its modality's encoder, and the encoder's path.
fn input_embedding(
    args: &MatchArgs,
    manifest: &Manifest,
    runtime: &OrtRuntime,
    providers: &[ExecutionProviderKind],
) -> Result<(Vec<f32>, PathBuf)> {
    match args.modality.sensor() {
        Some(modality) => {
            let Some((path, entry)) = manifest.model(modality) else {
                bail!(
                    "{}: the model set has no {modality} encoder",
                    args.models.join("manifest.json").display()
                );
            };
            manifest::verify_sha256(&path, &entry.sha256)?;
            let tensor = super::embed::sensor_tensor(modality, &args.input, &args.options)?;
            let mut encoder =
                Encoder::load(runtime, modality, &path, providers, false, args.run.threads)?;
            let out = encoder.run(&tensor.insert_axis(Axis(0)))?;
            Ok((out.row(0).to_vec(), path))
        }
        None => {
            let (_, model) = text_model(&args.models)?;
            manifest::verify_sha256(&model.onnx, &model.onnx_sha256)?;
            let mut options = args.options.clone();
            options.vocab = Some(model.vocab.clone());
            let ids = super::embed::text_ids(&args.input, &options, None)?;
            if ids.nrows() != 1 {
                bail!("{}: match takes one text", args.input.display());
            }
            let mut encoder = TextEncoder::load(runtime, &model.onnx, providers, args.run.threads)?;
            let out = encoder.run(&ids)?;
            Ok((out.row(0).to_vec(), model.onnx))
        }
    }
}

#[allow(clippy::print_stdout, reason = "match prints its table")]
fn print_table(
    args: &MatchArgs,
    bank: &ConceptBank,
    embedding: &[f32],
    model: &Path,
    source: &str,
) {
    let matches = bank.top_k(embedding, args.top_k, -1.0);
    println!(
        "{} ({}, {}) against {} concepts from {source}:",
        args.input.display(),
        args.modality.sensor().map_or("text", |m| m.as_str()),
        model.display(),
        bank.len()
    );
    let width = matches
        .iter()
        .map(|m| m.label.chars().count())
        .max()
        .unwrap_or(0)
        .max("concept".len());
    println!("{:>4}  {:<width$}  cosine", "rank", "concept");
    for (i, m) in matches.iter().enumerate() {
        println!("{:>4}  {:<width$}  {:>6.3}", i + 1, m.label, m.score);
    }
}
