//! A committed image is a whole image: it can be saved (and pushed) like a pulled one, because
//! its new layer is kept as a blob and its manifest names the base layers' stored blobs.

use crate::common::Env;

#[test]
fn a_committed_image_saves_and_loads_elsewhere() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "--name", "c", "bb", "sh", "-c", "echo committed > /new; rm /bin/vi"]);
    e.ok(["commit", "c", "cimg"]);
    let out = e.mkdir("out").join("cimg.tar");
    for format in ["docker-archive", "oci-archive"] {
        e.ok(["save", "--format", format, "-o", out.to_str().unwrap(), "cimg"]);
        let e2 = Env::new();
        let o = e2.ok(["load", "-i", out.to_str().unwrap()]);
        assert!(o.contains("Loaded image: localhost/cimg:latest"), "{o}");
        assert_eq!(
            e2.ok(["run", "--rm", "cimg", "sh", "-c", "cat /new; test ! -e /bin/vi && echo gone"]),
            "committed\ngone\n"
        );
        std::fs::remove_file(&out).unwrap();
    }
}
