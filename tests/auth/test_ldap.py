"""The LDAP provider against a real slapd: binds, searches, groups, escaping, TLS, outages; the
provider settings' validation; group mapping and the directory cache."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth.policy import Role
from auth.provider_settings import GroupMapping, LdapSettings, ProviderSpec, check_providers
from auth.providers import Directory, DirectoryAccount, ProviderUnavailable, mapped_roles, merge_memberships
from auth.providers.ldap import LdapProvider, normalise_dn
from hub.config import ConfigError, load_config
from hub.secret import Secret
from tests.helpers.server import free_port
from tests.helpers.slapd import ROOT_DN, ROOT_PASSWORD, SUFFIX, people_ldif

OU = "unit"
BASE = f"ou={OU},{SUFFIX}"
PEOPLE = {"alice": "alice-Dir-1", "bob": "bob-Dir-2", "al": "al-Dir-3"}
GROUPS = {"devs": ["alice", "al"], "ops": ["alice"], "admins": ["bob"]}


@pytest.fixture(scope="module")
def directory(slapd):
    slapd.add(people_ldif(OU, PEOPLE, GROUPS))
    return slapd


def spec(directory, **ldap) -> ProviderSpec:
    settings = {"url": directory.url, "bind_dn": ROOT_DN, "bind_password": Secret(ROOT_PASSWORD),
                "user_search_base": BASE, "user_filter": "(uid={username})", **ldap}
    return ProviderSpec(name="corp", type="ldap", cache_seconds=0, ldap=LdapSettings(**settings))


async def test_right_password_gives_the_account_with_its_groups(directory):
    account = await LdapProvider(spec(directory)).check_password("alice", PEOPLE["alice"])
    assert account == DirectoryAccount("corp", "alice", "Alice Example", "alice@daohub.test",
                                       frozenset({f"cn=devs,ou={OU},dc=daohub,dc=test",
                                                  f"cn=ops,ou={OU},dc=daohub,dc=test"}))


async def test_group_search_finds_the_same_groups(directory):
    provider = LdapProvider(spec(directory, group_source="search", group_search_base=BASE,
                                 group_filter="(&(objectClass=groupOfNames)(member={dn}))"))
    account = await provider.lookup("alice")
    assert account is not None and account.groups == {normalise_dn(f"cn=devs,{BASE}"), normalise_dn(f"cn=ops,{BASE}")}


@pytest.mark.parametrize("username, password", [
    ("alice", "wrong-password"),
    ("alice", ""),              # an empty password is an unauthenticated bind on the wire: never sent
    ("nobody", "whatever-1"),
    ("*", PEOPLE["alice"]),
    ("*)(uid=*", PEOPLE["alice"]),
    ("al*", PEOPLE["alice"]),   # unescaped, (uid=al*) would find alice (and al)
    ("alice)(|(uid=*", PEOPLE["alice"]),
    ("ali\\2a", PEOPLE["alice"]),
])
async def test_wrong_empty_and_injected_credentials_are_refused(directory, username, password):
    assert await LdapProvider(spec(directory)).check_password(username, password) is None


async def test_filter_values_are_escaped_as_rfc_4515_says(directory):
    provider = LdapProvider(spec(directory))
    assert await provider.lookup("al*") is None
    assert await provider.lookup("*") is None
    assert (await provider.lookup("al")).username == "al"


async def test_a_filter_matching_several_entries_is_refused(directory):
    # A careless filter that ignores the name matches everyone: nobody is signed in through it.
    provider = LdapProvider(spec(directory, user_filter="(|(objectClass=inetOrgPerson)(uid={username}))"))
    assert await provider.check_password("alice", PEOPLE["alice"]) is None


async def test_anonymous_search(directory):
    provider = LdapProvider(spec(directory, bind_dn="", bind_password=Secret("")))
    assert (await provider.check_password("bob", PEOPLE["bob"])).username == "bob"


async def test_wrong_search_password_is_an_outage_not_a_wrong_user_password(directory):
    provider = LdapProvider(spec(directory, bind_password=Secret("not-the-root-password")))
    with pytest.raises(ProviderUnavailable, match="directory corp is unavailable"):
        await provider.check_password("alice", PEOPLE["alice"])


async def test_bind_password_file(directory, tmp_path):
    path = tmp_path / "bind"
    path.write_text(ROOT_PASSWORD + "\n")
    provider = LdapProvider(spec(directory, bind_password=Secret(""), bind_password_file=str(path)))
    assert (await provider.lookup("alice")).username == "alice"


async def test_nobody_listening_is_unavailable(directory):
    provider = LdapProvider(spec(directory, url=f"ldap://127.0.0.1:{free_port()}", timeout_seconds=2))
    with pytest.raises(ProviderUnavailable):
        await provider.check_password("alice", PEOPLE["alice"])


async def test_ldaps_and_start_tls_verify_the_certificate(directory):
    ca = str(directory.pki.ca_file)
    for extra in ({"url": directory.ldaps_url, "ca_file": ca}, {"start_tls": True, "ca_file": ca}):
        account = await LdapProvider(spec(directory, **extra)).check_password("alice", PEOPLE["alice"])
        assert account is not None and account.username == "alice", extra
    # A certificate from a CA this client does not trust is refused, both ways, unless told not to check.
    stranger = str(directory.pki.stranger_ca_file)
    for extra in ({"url": directory.ldaps_url, "ca_file": stranger}, {"start_tls": True, "ca_file": stranger}):
        with pytest.raises(ProviderUnavailable):
            await LdapProvider(spec(directory, **extra)).check_password("alice", PEOPLE["alice"])
    unchecked = LdapProvider(spec(directory, url=directory.ldaps_url, ca_file=stranger, verify_tls=False))
    assert await unchecked.check_password("alice", PEOPLE["alice"]) is not None


async def test_the_directory_cache_remembers_binds_and_accounts_for_cache_seconds(directory):
    now = [1000.0]
    provider = LdapProvider(dataclasses.replace(spec(directory), cache_seconds=30))
    calls = []
    real_check, real_lookup = provider.check_password, provider.lookup

    async def counted_check(username, password):
        calls.append(("check", username))
        return await real_check(username, password)

    async def counted_lookup(username):
        calls.append(("lookup", username))
        return await real_lookup(username)

    provider.check_password, provider.lookup = counted_check, counted_lookup
    cache = Directory([provider], clock=lambda: now[0])
    assert (await cache.check_password("corp", "alice", PEOPLE["alice"])).username == "alice"
    assert (await cache.check_password("corp", "alice", PEOPLE["alice"])).username == "alice"
    assert (await cache.account("corp", "alice")).username == "alice"
    assert calls == [("check", "alice")]
    # A wrong password is never answered from the cache, and never cached.
    assert await cache.check_password("corp", "alice", "wrong-password") is None
    assert await cache.check_password("corp", "alice", "") is None
    assert calls == [("check", "alice"), ("check", "alice")]
    now[0] += 31
    assert (await cache.account("corp", "alice")).username == "alice"
    assert (await cache.check_password("corp", "alice", PEOPLE["alice"])).username == "alice"
    assert calls[2:] == [("lookup", "alice"), ("check", "alice")]
    assert await cache.account("other", "alice") is None


def test_group_mapping_takes_the_highest_role_and_platform_admin():
    rules = [GroupMapping("cn=devs,dc=x", "a", "developer"), GroupMapping("CN=Ops, DC=x", "a", "maintainer"),
             GroupMapping("cn=devs,dc=x", "b", "guest"), GroupMapping("cn=admins,dc=x", platform_admin=True)]
    groups = frozenset({"cn=devs,dc=x", "cn=ops,dc=x"})
    assert mapped_roles(rules, groups, normalise_dn) == ({"a": Role.MAINTAINER, "b": Role.GUEST}, False)
    assert mapped_roles(rules, frozenset({"cn=admins,dc=x"}), normalise_dn) == ({}, True)
    assert merge_memberships({"a": "admin", "c": "guest"}, {"a": Role.DEVELOPER, "b": Role.GUEST}) == {
        "a": Role.ADMIN, "b": Role.GUEST, "c": Role.GUEST}


def test_bind_password_never_shows_in_reprs(directory):
    text = repr(spec(directory)) + repr(LdapProvider(spec(directory)))
    assert ROOT_PASSWORD not in text


GOOD = {"name": "corp", "type": "ldap", "ldap": {"url": "ldaps://ldap.example", "user_search_base": "dc=x",
                                                "bind_dn": "cn=svc,dc=x", "bind_password": "pw"}}


def _with(**changes) -> dict:
    item = {**GOOD, "ldap": dict(GOOD["ldap"])}
    for key, value in changes.items():
        if key.startswith("ldap_"):
            item["ldap"][key[5:]] = value
        else:
            item[key] = value
    return item


@pytest.mark.parametrize("item, message", [
    (_with(name="local"), "name"),
    (_with(name="Corp"), "name"),
    (_with(type="kerberos"), "type"),
    (_with(ldap_url="http://ldap.example"), "url"),
    (_with(ldap_url="ldaps://ldap.example", ldap_start_tls=True), "start_tls"),
    (_with(ldap_bind_password=""), "bind_dn and a bind password go together"),
    (_with(ldap_user_search_base=""), "user_search_base"),
    (_with(ldap_user_filter="(uid=alice)"), "user_filter"),
    (_with(ldap_user_filter="uid={username}"), "user_filter"),
    (_with(ldap_user_filter="(uid={user})"), "user_filter"),
    (_with(ldap_group_source="search"), "group_search_base"),
    (_with(ldap_group_source="nested"), "group_source"),
    (_with(ldap_username_attribute="uid)(x"), "username_attribute"),
    (_with(group_mappings=[{"group": "cn=g", "tenant": "a", "role": "owner"}]), "role"),
    (_with(group_mappings=[{"group": "cn=g", "role": "developer"}]), "tenant"),
    (_with(group_mappings=[{"group": "cn=g"}]), "platform_admin"),
    (_with(group_mappings=[{"group": "cn=g", "tenant": "a", "role": "guest", "bogus": 1}]), "unknown"),
    (_with(cache_seconds=-1), "cache_seconds"),
])
def test_bad_provider_settings_are_startup_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ={}, overrides={"auth": {"providers": [item]}})


def test_providers_from_the_environment_and_names_unique():
    import json

    cfg = load_config(environ={"DAOHUB_AUTH_PROVIDERS": json.dumps([GOOD])})
    assert cfg.auth.providers[0].ldap.bind_password == "pw" and "pw" not in repr(cfg.auth.providers)
    with pytest.raises(ValueError, match="another provider"):
        check_providers([cfg.auth.providers[0], cfg.auth.providers[0]])


def test_the_documented_example_loads():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "sign-in.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    cfg = load_config(environ={}, overrides=yaml.safe_load(block))
    (corp,) = cfg.auth.providers
    assert corp.ldap.bind_password_file == "/run/secrets/ldap" and len(corp.group_mappings) == 3


# Names made of filter syntax, name fragments of the directory's people and a few other characters.
_FILTER_SYNTAX = st.sampled_from(["*", "(", ")", "\\", "\\2a", "|", "&", "!", "=", "uid=", "\x00", "al", "alice",
                                  "bob", " ", "é"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.lists(_FILTER_SYNTAX, min_size=1, max_size=6).map("".join))
async def test_a_lookup_finds_exactly_the_named_user_or_no_one(directory, name):
    account = await LdapProvider(spec(directory)).lookup(name)
    assert account is None or account.username == name.lower(), (name, account)
    assert (account is not None) == (name.lower() in PEOPLE), name


async def test_a_certificate_for_another_host_is_refused(directory, tmp_path):
    """The CA is trusted, but the certificate names other.test, not 127.0.0.1: refused (host name check)."""
    import types

    from tests.helpers.slapd import Slapd

    cert, key = directory.pki.issue_server_pair(tmp_path, "other.test", names=("other.test",))
    other = Slapd(pki=types.SimpleNamespace(ca_file=directory.pki.ca_file, cert_file=cert, key_file=key))
    with other:
        ca = str(directory.pki.ca_file)
        for extra in ({"url": other.ldaps_url}, {"url": other.url, "start_tls": True}):
            with pytest.raises(ProviderUnavailable):
                await LdapProvider(spec(directory, ca_file=ca, bind_dn="", bind_password=Secret(""),
                                        **extra)).lookup("alice")
            # The same server without the checks answers (its database is empty: nobody is found).
            unchecked = LdapProvider(spec(directory, ca_file=ca, bind_dn="", bind_password=Secret(""),
                                          verify_tls=False, **extra))
            assert await unchecked.lookup("alice") is None
