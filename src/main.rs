//! `cupool`: the seed example (global average pooling three ways), plus `bench` and `check`.
//!
//!   cupool [demo] [--shape N,C,H,W] [--device auto|cpu|cuda|emulated] [--dtype f32|bf16|f16|f64]
//!   cupool bench  [--device ...] [--quick] [--json FILE] [--shapes NAME,...] [--ops SUBSTRING,...]
//!                 [--dtypes f32,bf16,f16,f64] [--row-seconds S]
//!   cupool bench --serve [--device ...] [--quick]   (rows on request, for compare_torch.py --pair)
//!   cupool check  (which devices work here, and why not)

mod bench;

use anyhow::{bail, Context, Result};
use cupool::{CudaTensor, DType, Device};
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.first().map(String::as_str) {
        Some("demo") | Some("bench") | Some("check") => (args[0].clone(), &args[1..]),
        _ => ("demo".to_string(), &args[..]),
    };
    let opts = Options::parse(rest)?;
    match command.as_str() {
        "demo" => demo(&opts),
        "bench" => cupool_bench(&opts),
        "check" => check(),
        _ => unreachable!(),
    }
}

struct Options {
    shape: Vec<usize>,
    device: String,
    dtype: DType,
    quick: bool,
    json: Option<String>,
    /// `bench` only: suite shape names to run (empty: all).
    shapes: Vec<String>,
    /// `bench` only: run the ops whose name contains one of these (empty: all).
    ops: Vec<String>,
    /// `bench` only: run every op in these element types (empty: the default set).
    dtypes: Vec<DType>,
    /// `bench` only: about how long each row's timed calls take (default 0.8 s, 0.25 with --quick).
    row_seconds: Option<f64>,
    /// `bench` only: answer single-row requests on stdin (see `bench::serve`).
    serve: bool,
}

fn parse_dtype(name: &str) -> Result<DType> {
    Ok(match name {
        "f32" => DType::F32,
        "f64" => DType::F64,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => bail!("unknown dtype {other}"),
    })
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            shape: vec![256, 96, 128, 128],
            device: "auto".into(),
            dtype: DType::F32,
            quick: false,
            json: None,
            shapes: Vec::new(),
            ops: Vec::new(),
            dtypes: Vec::new(),
            row_seconds: None,
            serve: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--shape" => {
                    o.shape =
                        value()?.split(',').map(|s| s.trim().parse::<usize>()).collect::<Result<_, _>>()?;
                    if o.shape.len() != 4 {
                        bail!("--shape takes N,C,H,W");
                    }
                }
                "--device" => o.device = value()?.clone(),
                "--dtype" => o.dtype = parse_dtype(value()?)?,
                "--dtypes" => o.dtypes = value()?.split(',').map(parse_dtype).collect::<Result<_>>()?,
                "--quick" => o.quick = true,
                "--serve" => o.serve = true,
                "--json" => o.json = Some(value()?.clone()),
                "--shapes" => o.shapes = value()?.split(',').map(str::to_string).collect(),
                "--ops" => o.ops = value()?.split(',').map(str::to_string).collect(),
                "--row-seconds" => {
                    let s: f64 = value()?.parse().context("--row-seconds takes a number of seconds")?;
                    if !(s > 0.0 && s.is_finite()) {
                        bail!("--row-seconds must be positive");
                    }
                    o.row_seconds = Some(s);
                }
                "-h" | "--help" => {
                    println!("usage: cupool [demo|bench|check] [--shape N,C,H,W] [--device auto|cpu|cuda|emulated] [--dtype f32|f64|f16|bf16] [--quick] [--json FILE] [--shapes NAME,...] [--ops SUBSTRING,...] [--dtypes f32,bf16,f16,f64] [--row-seconds S] [--serve]");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other} (try --help)"),
            }
        }
        Ok(o)
    }

    fn device(&self) -> Result<Device> {
        Ok(match self.device.as_str() {
            "auto" => Device::auto(),
            "cpu" => Device::cpu(),
            "cuda" => Device::cuda(0)?,
            "emulated" => Device::emulated()?,
            other => bail!("unknown device {other}"),
        })
    }
}

/// One way of writing GAP, as a closure over the input.
type Formulation<'a> = Box<dyn Fn() -> cupool::Result<CudaTensor> + 'a>;

fn demo(opts: &Options) -> Result<()> {
    let device = opts.device()?;
    let s = &opts.shape;
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    println!(
        "cupool demo: global average pooling of a ({n}, {c}, {h}, {w}) {} tensor on {}",
        opts.dtype,
        device.name()
    );
    let len = s
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .context("--shape holds more elements than a usize counts")?;
    let x = CudaTensor::from_vec(&device, s, bench::random_f32(len, 42)?)?.to_dtype(opts.dtype)?;
    let bytes = (x.numel() + n * c) * opts.dtype.size_in_bytes();

    let formulations: [(&str, Formulation); 3] = [
        ("1. F.avg_pool2d(x, x.size()[2:])", Box::new(|| x.avg_pool2d(&cupool::AvgPool2d::new([h, w])))),
        ("2. F.adaptive_avg_pool2d(x, (1, 1))", Box::new(|| x.adaptive_avg_pool2d([1, 1]))),
        (
            "3. torch.mean(x.view(N, C, -1), dim=2)",
            Box::new(|| x.view(&[n as isize, c as isize, -1])?.mean(&[2], false)),
        ),
    ];
    let mut results = Vec::new();
    for (name, run) in &formulations {
        run()?.to_dtype(DType::F32)?.to_array::<f32>()?; // warm-up (loads kernels, touches pages)
        let mut times = Vec::new();
        let mut out = None;
        for _ in 0..5 {
            let t = Instant::now();
            let y = run()?;
            let values = y.to_dtype(DType::F32)?.to_array::<f32>()?; // waits for the device
            times.push(t.elapsed().as_secs_f64());
            out = Some((y.shape().to_vec(), values));
        }
        times.sort_by(f64::total_cmp);
        let (shape, values) = out.expect("ran at least once");
        results.push((name, shape, times[times.len() / 2], values));
    }
    let reference: Vec<f32> = results[2].3.iter().copied().collect();
    println!();
    println!("| formulation | output shape | median time | GB/s | max |diff| vs 3 |");
    println!("|---|---|---|---|---|");
    for (name, shape, t, values) in &results {
        let diff = values.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("| {name} | {shape:?} | {:.3} ms | {:.1} | {diff:.2e} |", t * 1e3, bytes as f64 / t / 1e9);
    }
    println!("\nbackend: {}", device.name());
    Ok(())
}

fn check() -> Result<()> {
    println!("cpu: ok");
    match Device::cuda(0) {
        Ok(d) => println!("cuda: ok, {}", d.name()),
        Err(e) => println!("cuda: unavailable ({e})"),
    }
    match Device::emulated() {
        Ok(d) => println!("emulated: ok, {}", d.name()),
        Err(e) => println!("emulated: unavailable ({e})"),
    }
    Ok(())
}

fn cupool_bench(opts: &Options) -> Result<()> {
    if opts.serve {
        if opts.json.is_some()
            || !opts.shapes.is_empty()
            || !opts.ops.is_empty()
            || !opts.dtypes.is_empty()
            || opts.row_seconds.is_some()
        {
            bail!("bench --serve takes only --device and --quick (each request names its row and time)");
        }
        return bench::serve(&opts.device()?, opts.quick);
    }
    let filter =
        bench::Filter { shapes: opts.shapes.clone(), ops: opts.ops.clone(), dtypes: opts.dtypes.clone() };
    bench::run(&opts.device()?, opts.quick, opts.row_seconds, opts.json.as_deref(), &filter)
}
