//! flatpak through ljspawn's bwrap form (issue 14, item 2): an app installed from a local
//! repository (a busybox runtime and a one-script app, built here offline with flatpak's own
//! tools) is run by an unmodified `flatpak run`, with `FLATPAK_BWRAP` pointing at a link named
//! `bwrap` to ljspawn, in root, rootless and setuid modes. Needs Debian's flatpak (make deps).

use std::os::unix::fs::symlink;
use std::path::Path;

use lj_tests::{path_str, run_with_timeout, Ctx, DEFAULT_TIMEOUT};

mod flatpak {
    lj_tests::mode_tests! {
        prefix = "flatpak::", run = lj_tests::run_ctx;
        run_an_installed_app: root rootless setuid;
    }
}

fn run_an_installed_app(cx: &Ctx) {
    if !Path::new("/usr/bin/flatpak").exists() {
        cx.skip("flatpak is not installed (apt-get install flatpak; make deps)");
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        cx.skip("busybox is not installed (the app's runtime is busybox)");
        return;
    }
    if lj_tests::current_uid() != 0 {
        cx.skip("installing the app into a private system installation needs root");
        return;
    }
    // Built and installed by root into a private system installation (FLATPAK_SYSTEM_DIR):
    // a non-root `flatpak install` asks the system bus for parental controls, which this
    // machine does not run; `flatpak run` needs no bus.
    let d = cx.root_tempdir();
    let link = d.join("bwrap");
    symlink(&cx.bin, &link).expect("ln -s ljspawn bwrap");
    let build = format!(
        r#"set -e
D={d}
export HOME=$D/roothome FLATPAK_SYSTEM_DIR=$D/sys
mkdir -p $HOME $D/rt/files/bin
cd $D
arch=$(flatpak --default-arch)
cp /bin/busybox rt/files/bin/busybox
for c in sh echo cat id pwd head; do ln -s busybox rt/files/bin/$c; done
printf '[Runtime]\nname=org.lj.Platform\nruntime=org.lj.Platform/%s/1\nsdk=org.lj.Platform/%s/1\n' $arch $arch >rt/metadata
flatpak build-export --runtime --files=files repo rt 1 >/dev/null
flatpak --system remote-add --no-gpg-verify lj $D/repo
flatpak --system install -y --noninteractive lj org.lj.Platform//1 >/dev/null
flatpak build-init app org.lj.Hello org.lj.Platform org.lj.Platform 1
mkdir -p app/files/bin
printf '#!/bin/sh\necho hello from flatpak\nhead -2 /.flatpak-info\nid -u\n' >app/files/bin/hello
chmod +x app/files/bin/hello
flatpak build-finish app --command=hello >/dev/null
flatpak build-export repo app >/dev/null
flatpak --system install -y --noninteractive lj org.lj.Hello >/dev/null
chmod -R a+rX $D/sys
mkdir -p $D/home $D/run && chown {uid} $D/home $D/run && chmod 700 $D/run
"#,
        d = d.str(),
        uid = cx.caller_uid
    );
    let mut c = std::process::Command::new("sh");
    c.args(["-c", &build]);
    let out = run_with_timeout(c, None, DEFAULT_TIMEOUT * 2).expect("build the flatpak app");
    assert_eq!(out.status(), 0, "the app could not be built and installed\n{}", out.report());
    // An unmodified `flatpak run`, as the caller of this mode, through the link.
    let run = format!(
        "export HOME={d}/home XDG_RUNTIME_DIR={d}/run FLATPAK_SYSTEM_DIR={d}/sys FLATPAK_BWRAP={link}; \
         exec flatpak --system run org.lj.Hello",
        d = d.str(),
        link = path_str(&link)
    );
    let out = run_with_timeout(cx.command(["sh", "-c", &run]), None, DEFAULT_TIMEOUT).expect("flatpak run");
    assert_eq!(
        out.lines(),
        ["hello from flatpak", "[Application]", "name=org.lj.Hello", &cx.caller_uid.to_string()],
        "{}",
        out.report()
    );
    assert_eq!(out.status(), 0, "{}", out.report());
}
