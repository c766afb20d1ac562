//! Translation never panics, whatever the spec: arbitrary Windows and Linux specs (valid and
//! invalid shapes, odd paths, huge numbers, unicode) go through parsing, container
//! translation, both process documents and serialization; every outcome is a value or an
//! error. Successful documents must also round-trip and respect the volume path rule.

mod common;

use berth_hcs::lcow::{ActualMode, LcowConfig};
use berth_hcs::translate::{
    document, exec_process_config, init_process_config, is_volume_guid_path, parse_spec, translate_container,
    TranslateContext,
};
use berth_hcs_schema::ContainerConfig;
use common::*;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just(VOLUME.to_string()),
        Just(r"\\?\Volume{66d1ef4c-7a00-11e6-8948-00155ddbef9d}}\".to_string()),
        Just(r"\\.\pipe\p".to_string()),
        Just(r"C:\wf\layer".to_string()),
        Just("uvmpath=/tmp/gcs/x/binds".to_string()),
        Just("uvmpath".to_string()),
        Just("ro".to_string()),
        Just("rbind".to_string()),
        "[a-zA-Z0-9\\\\/:.{}?= é😀<>&\"-]{0,16}",
    ]
    .boxed()
}

fn root_path() -> BoxedStrategy<String> {
    // Mostly valid, so that process-isolated translations get far.
    prop_oneof![4 => Just(VOLUME.to_string()), 1 => Just(String::new()), 2 => text()].boxed()
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![Just(None), s.prop_map(Some)]
}

/// Like `opt`, but present four times out of five.
fn often<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![1 => Just(None), 4 => s.prop_map(Some)]
}

fn insert(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v);
    }
}

fn process_value() -> BoxedStrategy<Value> {
    (
        opt(any::<bool>()),
        text(),
        opt(prop::collection::vec(text(), 0..4)),
        opt(text()),
        opt(prop::collection::vec(text(), 0..4)),
        opt(text()),
        opt((any::<u64>(), any::<u64>())),
    )
        .prop_map(|(terminal, cwd, args, cl, env, user, cs)| {
            let mut m = Map::new();
            insert(&mut m, "terminal", terminal.map(Value::from));
            m.insert("cwd".into(), json!(cwd));
            insert(&mut m, "args", args.map(|a| json!(a)));
            insert(&mut m, "commandLine", cl.map(Value::from));
            insert(&mut m, "env", env.map(|e| json!(e)));
            let mut u = json!({"uid": 0, "gid": 0});
            if let Some(n) = user {
                u["username"] = json!(n);
            }
            m.insert("user".into(), u);
            insert(&mut m, "consoleSize", cs.map(|(h, w)| json!({"height": h, "width": w})));
            Value::Object(m)
        })
        .boxed()
}

fn mount_value() -> BoxedStrategy<Value> {
    (
        text(),
        opt(text()),
        prop_oneof![
            4 => Just(None),
            1 => Just(Some("".to_string())),
            2 => Just(Some("bind".to_string())),
            1 => Just(Some("proc".to_string())),
            1 => text().prop_map(Some),
        ],
        opt(prop::collection::vec(text(), 0..4)),
    )
        .prop_map(|(d, s, t, o)| {
            let mut m = Map::new();
            m.insert("destination".into(), json!(d));
            insert(&mut m, "source", s.map(Value::from));
            insert(&mut m, "type", t.map(Value::from));
            insert(&mut m, "options", o.map(|o| json!(o)));
            Value::Object(m)
        })
        .boxed()
}

fn windows_value() -> BoxedStrategy<Value> {
    (
        often(prop::collection::vec(text(), 1..5)),
        opt((
            opt(any::<u64>()),
            opt(any::<u16>()),
            opt(any::<u16>()),
            opt(any::<u64>()),
            opt(any::<u64>()),
            opt(any::<u64>()),
        )),
        opt(opt(text())),
        opt((
            opt(prop::collection::vec(text(), 0..3)),
            opt(any::<bool>()),
            opt(prop::collection::vec(text(), 0..3)),
            opt(text()),
        )),
        opt(prop_oneof![text().prop_map(Value::from), Just(json!({"k": "v"}))]),
        opt(any::<bool>()),
        opt(any::<bool>()),
    )
        .prop_map(|(folders, res, hv, net, cred, servicing, flushes)| {
            let mut m = Map::new();
            insert(&mut m, "layerFolders", folders.map(|f| json!(f)));
            if let Some((count, shares, max, limit, iops, bps)) = res {
                let mut r = json!({"cpu": {}, "memory": {}, "storage": {}});
                if let Some(c) = count {
                    r["cpu"]["count"] = json!(c);
                }
                if let Some(s) = shares {
                    r["cpu"]["shares"] = json!(s);
                }
                if let Some(x) = max {
                    r["cpu"]["maximum"] = json!(x);
                }
                if let Some(l) = limit {
                    r["memory"]["limit"] = json!(l);
                }
                if let Some(i) = iops {
                    r["storage"]["iops"] = json!(i);
                }
                if let Some(b) = bps {
                    r["storage"]["bps"] = json!(b);
                }
                m.insert("resources".into(), r);
            }
            if let Some(h) = hv {
                let mut hm = Map::new();
                insert(&mut hm, "utilityVMPath", h.map(Value::from));
                m.insert("hyperv".into(), Value::Object(hm));
            }
            if let Some((eps, unq, dns, shared)) = net {
                let mut n = Map::new();
                insert(&mut n, "endpointList", eps.map(|e| json!(e)));
                insert(&mut n, "allowUnqualifiedDNSQuery", unq.map(Value::from));
                insert(&mut n, "DNSSearchList", dns.map(|d| json!(d)));
                insert(&mut n, "networkSharedContainerName", shared.map(Value::from));
                m.insert("network".into(), Value::Object(n));
            }
            insert(&mut m, "credentialSpec", cred);
            insert(&mut m, "servicing", servicing.map(Value::from));
            insert(&mut m, "ignoreFlushesDuringBoot", flushes.map(Value::from));
            Value::Object(m)
        })
        .boxed()
}

fn spec_value() -> BoxedStrategy<Value> {
    (
        opt(text()),
        opt((root_path(), opt(any::<bool>()))),
        often(process_value()),
        opt(prop::collection::vec(mount_value(), 0..3)),
        any::<bool>(),
        often(windows_value()),
    )
        .prop_map(|(hostname, root, process, mounts, linux, windows)| {
            let mut m = Map::new();
            m.insert("ociVersion".into(), json!("1.0.1"));
            insert(&mut m, "hostname", hostname.map(Value::from));
            insert(
                &mut m,
                "root",
                root.map(|(p, ro)| match ro {
                    Some(ro) => json!({"path": p, "readonly": ro}),
                    None => json!({"path": p}),
                }),
            );
            insert(&mut m, "process", process);
            insert(&mut m, "mounts", mounts.map(|v| json!(v)));
            if linux {
                m.insert("linux".into(), json!({}));
            }
            insert(&mut m, "windows", windows);
            Value::Object(m)
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn translation_never_panics(
        v in spec_value(),
        exec in process_value(),
        all_exist in any::<bool>(),
        cpus in 1u64..64,
        build in opt(14000u32..20000),
        lcow_mode in 0u8..5,
        id in "[a-z0-9é<]{1,8}",
    ) {
        let Ok(parsed) = parse_spec(v.to_string().as_bytes()) else {
            return Ok(());
        };
        let mut host = FakeHost::new();
        host.cpus = cpus;
        host.build = build;
        if all_exist {
            // Every UtilityVM candidate the translation might stat exists.
            for f in parsed.spec.windows().as_ref().and_then(|w| w.layer_folders().clone()).unwrap_or_default() {
                host.existing.push(berth_hcs::winpath::join(&[&f, "UtilityVM"]));
            }
        }
        let lcow = match lcow_mode {
            0 => None,
            1 | 2 => Some(LcowConfig { actual_mode: ActualMode::Vhdx, ..Default::default() }),
            _ => Some(LcowConfig { actual_mode: ActualMode::KernelInitrd, ..Default::default() }),
        };
        let n2g = TestNameToGuid::default();
        let ctx = TranslateContext { name_to_guid: &n2g, host: &host };
        let r = translate_container(&id, &parsed.spec, parsed.credential_spec.as_deref(), lcow.as_ref(), ctx);
        let Ok(t) = r else {
            // Errors carry a message and a class; formatting them must not panic either.
            let e = r.unwrap_err();
            prop_assert!(!e.to_string().is_empty());
            let _ = e.kind();
            return Ok(());
        };
        let doc = document(&t.config).unwrap();
        let back: ContainerConfig = serde_json::from_str(&doc).unwrap();
        prop_assert_eq!(&back, &t.config);
        if t.is_windows && !t.config.hv_partition {
            let with_slash = format!("{}\\", t.config.volume_path);
            prop_assert!(is_volume_guid_path(&with_slash), "{}", with_slash);
        }
        prop_assert!(t.config.processor_count as u64 <= cpus);
        if let Ok(p) = init_process_config(&t.spec, t.is_windows) {
            let _ = document(&p).unwrap();
            if !p.emulate_console {
                prop_assert_eq!(p.console_size, [0, 0]);
            }
        }
        if let Ok(p) = serde_json::from_value::<oci_spec::runtime::Process>(exec) {
            if let Ok(p) = exec_process_config(&t.spec, t.is_windows, &p) {
                prop_assert!(p.create_std_in_pipe && p.create_std_out_pipe);
                let _ = document(&p).unwrap();
            }
        }
    }
}
