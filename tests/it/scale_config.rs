
#[test]
fn a_big_file_read_on_two_threads_names_its_bad_items_at_their_places() {
    // Over 1 MiB, so the file is read on a second thread (see `config::read_items`).
    let mut yaml = format!("routes:\n  - {{id: r, uri: /r, upstream: {UP}, plugins: {{key-auth: {{}}}}}}\nconsumers:\n");
    for i in 0..20_000 {
        match i {
            5_000 => yaml.push_str("  - {username: c5000, plugins: {key-auth: {key: 123}}}\n"),
            15_000 => yaml.push_str("  - {username: c15000, plugins: {key-auth: {key: k00007}}}\n"),
            _ => yaml.push_str(&format!(
                "  - {{username: c{i}, plugins: {{key-auth: {{key: k{i:05}}}}}}}\n"
            )),
        }
    }
    yaml.push_str("  - {id: c5000/credentials/x, plugins: {key-auth: {key: kx}}}\n#END\n");
    assert!(yaml.len() > 1 << 20);
    let lines = check_fails(&[("resources.yaml", &yaml)]);
    assert_line(
        &lines,
        "resources.yaml: consumers[5000].plugins.key-auth.key",
        &["invalid type"],
    );
    assert_line(
        &lines,
        "resources.yaml: consumers[15000].plugins.key-auth.key",
        &["same key as consumers[7].plugins.key-auth.key (c7)"],
    );
    assert_eq!(lines.len(), 2, "{}", lines.join("\n"));
}
