use super::*;

fn cmds(opts: &IptablesOptions) -> String {
    plan(opts).join("\n")
}

#[test]
fn default_plan_matches_istio_iptables() {
    let expected = "\
iptables -t nat -N ISTIO_INBOUND
iptables -t nat -N ISTIO_REDIRECT
iptables -t nat -N ISTIO_IN_REDIRECT
iptables -t nat -N ISTIO_OUTPUT
iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
iptables -t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
iptables -t nat -A PREROUTING -p tcp -j ISTIO_INBOUND
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15000 -j RETURN
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
iptables -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
iptables -t nat -A OUTPUT -p tcp -j ISTIO_OUTPUT
iptables -t nat -A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
iptables -t nat -A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
iptables -t nat -A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT";
    assert_eq!(cmds(&IptablesOptions::default()), expected);
}

#[test]
fn exclusions_come_before_the_redirect() {
    let opts = IptablesOptions {
        outbound_port: 16001,
        inbound_port: 16006,
        proxy_uid: 101,
        proxy_gid: 102,
        exclude_inbound_ports: vec![22, 22, 8443],
        exclude_outbound_ports: vec![5432, 3306],
        exclude_outbound_ranges: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        ..Default::default()
    };
    let plan = plan(&opts);
    let pos = |needle: &str| {
        plan.iter()
            .position(|c| c.ends_with(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {plan:#?}"))
    };
    assert!(plan
        .iter()
        .any(|c| c.ends_with("REDIRECT --to-ports 16001")));
    assert!(plan
        .iter()
        .any(|c| c.ends_with("REDIRECT --to-ports 16006")));
    assert_eq!(plan.iter().filter(|c| c.contains("--dport 22 ")).count(), 1);
    assert!(pos("--dport 8443 -j RETURN") < pos("ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT"));
    assert!(pos("--dport 3306 -j RETURN") < pos("--dport 5432 -j RETURN"));
    assert!(pos("-d 10.0.0.0/8 -j RETURN") < pos("ISTIO_OUTPUT -j ISTIO_REDIRECT"));
    assert!(pos("-m owner --uid-owner 101 -j RETURN") < pos("ISTIO_OUTPUT -j ISTIO_REDIRECT"));
    assert!(pos("-m owner --gid-owner 102 -j RETURN") < pos("ISTIO_OUTPUT -j ISTIO_REDIRECT"));
    assert!(
        !plan.iter().any(|c| c.contains("fd00::")),
        "IPv6 CIDR in IPv4 rules"
    );
}

#[test]
fn selected_ports_and_ranges() {
    let opts = IptablesOptions {
        inbound_ports: Selection::Only(vec![9080, 80]),
        outbound_ranges: Selection::Only(vec!["10.96.0.0/12".parse().unwrap()]),
        ..Default::default()
    };
    let plan = cmds(&opts);
    assert!(plan.contains("-A ISTIO_INBOUND -p tcp --dport 80 -j ISTIO_IN_REDIRECT\niptables -t nat -A ISTIO_INBOUND -p tcp --dport 9080 -j ISTIO_IN_REDIRECT"));
    assert!(
        !plan.contains("--dport 15000"),
        "exclusions only apply to `*`"
    );
    assert!(plan.ends_with(
        "-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT\niptables -t nat -A ISTIO_OUTPUT -j RETURN"
    ));
}

#[test]
fn no_inbound_capture() {
    let opts = IptablesOptions {
        inbound_ports: Selection::Only(Vec::new()),
        ..Default::default()
    };
    let plan = cmds(&opts);
    assert!(!plan.contains("PREROUTING"));
    assert!(!plan.contains("-j ISTIO_IN_REDIRECT"));
    assert!(plan.contains("-A OUTPUT -p tcp -j ISTIO_OUTPUT"));
}

#[test]
fn ipv6_rules_use_ip6tables_and_v6_addresses() {
    let opts = IptablesOptions {
        ipv6: true,
        exclude_outbound_ranges: vec!["fd00::/8".parse().unwrap()],
        ..Default::default()
    };
    let plan = plan(&opts);
    let v6: Vec<&String> = plan
        .iter()
        .filter(|c| c.starts_with("ip6tables "))
        .collect();
    assert_eq!(v6.len(), 22);
    assert!(v6.iter().any(|c| c.contains("-o lo -s ::6/128 -j RETURN")));
    assert!(v6.iter().any(|c| c.contains("-d ::1/128 -j RETURN")));
    assert!(v6.iter().any(|c| c.contains("-d fd00::/8 -j RETURN")));
    assert!(!v6.iter().any(|c| c.contains("127.0.0.1")));
}

#[test]
fn restore_format() {
    let input = restore_input(&IptablesOptions::default(), false);
    assert!(input.starts_with("*nat\n:ISTIO_INBOUND - [0:0]\n:ISTIO_REDIRECT - [0:0]\n"));
    assert!(input.contains("\n-A PREROUTING -p tcp -j ISTIO_INBOUND\n"));
    assert!(input.ends_with("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n"));
    assert_eq!(input.lines().count(), 1 + 4 + 17 + 1);
}

#[test]
fn backend_names() {
    let b = Backend::named("iptables-nft");
    assert_eq!(b.ip6tables, "ip6tables-nft");
    assert_eq!(Backend::restore("iptables-nft"), "iptables-nft-restore");
    assert_eq!(
        Backend::named("/sbin/iptables").ip6tables,
        "/sbin/ip6tables"
    );
}

#[test]
fn args_parse_like_istio_iptables() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: IptablesArgs,
    }
    let cli = Cli::parse_from([
        "x",
        "-p",
        "15001",
        "-z",
        "15006",
        "-u",
        "1337",
        "-b",
        "80,8080",
        "-x",
        "10.0.0.1,192.168.0.0/16",
        "-o",
        "5432",
    ]);
    let o = cli.args.options().unwrap();
    assert_eq!(o.inbound_ports, Selection::Only(vec![80, 8080]));
    assert_eq!(o.proxy_gid, 1337);
    assert_eq!(o.exclude_outbound_ports, vec![5432]);
    assert_eq!(o.exclude_outbound_ranges[0].to_string(), "10.0.0.1/32");
    let bad = Cli::parse_from(["x", "-x", "nope"]);
    assert!(bad.args.options().is_err());
    let none = Cli::parse_from(["x", "-b", ""]);
    assert_eq!(
        none.args.options().unwrap().inbound_ports,
        Selection::Only(vec![])
    );
}
