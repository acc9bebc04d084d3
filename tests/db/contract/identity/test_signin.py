"""identity.sign-in (migration 0014): provider accounts, CLI secrets, pending OIDC sign-ins and the
identity providers of the admin API, each change with its audit row, the same on both dialects."""

from __future__ import annotations

import dataclasses
import time

from hub.db.signin_store import MAX_CLI_SECRETS, CliSecretRecord, LoginStateRecord, SignInOutcome

HASH = "!provider:corp"


async def _actions(store) -> list[tuple[str, str, str]]:
    return [(r.actor, r.action, r.target) for r in await store.audit_entries(100, None)]


async def test_a_provider_sign_in_provisions_once_and_records_groups(metadata):
    store = metadata
    out = await store.record_provider_sign_in("alice", HASH, "corp", "sub-1", "Alice", "a@x", ["b", "a", "a"])
    assert out == SignInOutcome.PROVISIONED
    user = await store.get_user("alice")
    assert user.password_hash == HASH and not user.is_admin
    acct = await store.provider_account("alice")
    assert (acct.provider, acct.subject, acct.display_name, acct.email, acct.groups) == (
        "corp", "sub-1", "Alice", "a@x", ("a", "b"))
    assert await _actions(store) == [("alice", "user.provision", "alice")]
    # Signing in again updates the groups, writes no second provisioning row.
    assert await store.record_provider_sign_in("alice", HASH, "corp", "sub-1", "Alice E", "", ["c"]) == \
        SignInOutcome.SIGNED_IN
    assert (await store.provider_account("alice")).groups == ("c",)
    assert len(await _actions(store)) == 1
    # Another subject of the same provider, another provider, a local account: the name is taken.
    assert await store.record_provider_sign_in("alice", HASH, "corp", "sub-2", "", "", []) == SignInOutcome.TAKEN
    assert await store.record_provider_sign_in("alice", "!provider:other", "other", "sub-1", "", "", []) == \
        SignInOutcome.TAKEN
    await store.create_user("root", "argon2-hash", is_admin=True)
    assert await store.record_provider_sign_in("root", HASH, "corp", "sub-3", "", "", []) == SignInOutcome.TAKEN
    # One subject is one account: it cannot sign in as a second name.
    assert await store.record_provider_sign_in("alice2", HASH, "corp", "sub-1", "", "", []) == SignInOutcome.TAKEN
    assert await store.get_user("alice2") is None
    await store.update_user("alice", {"disabled": True})
    assert await store.record_provider_sign_in("alice", HASH, "corp", "sub-1", "", "", []) == SignInOutcome.DISABLED
    # Deleting the account deletes what the provider said of it.
    await store.delete_user("alice")
    assert await store.provider_account("alice") is None


async def test_cli_secrets_are_stored_by_hash_listed_and_deleted_with_audit_rows(metadata):
    store = metadata
    await store.create_user("bob", HASH)
    now = time.time()
    rec = CliSecretRecord("s1", "bob", "laptop", "sha256:ab", now, None, None)
    assert await store.create_cli_secret("s1", "bob", "laptop", "sha256:ab", now, None, "bob")
    assert await store.get_cli_secret("s1") == rec
    assert [s.id for s in await store.cli_secrets("bob")] == ["s1"]
    await store.touch_cli_secret("s1", now + 100)
    await store.touch_cli_secret("s1", now + 110)  # within the minute: not written
    assert (await store.get_cli_secret("s1")).last_used_at == now + 100
    assert not await store.delete_cli_secret("someone", "s1", "x")
    assert await store.delete_cli_secret("bob", "s1", "root")
    assert await store.get_cli_secret("s1") is None
    assert [a for a in await _actions(store)] == [("root", "user.cli_secret.delete", "bob"),
                                                  ("bob", "user.cli_secret.create", "bob")]
    for i in range(MAX_CLI_SECRETS):
        assert await store.create_cli_secret(f"n{i:02}", "bob", "n", "sha256:cd", now, None, "bob")
    assert not await store.create_cli_secret("over", "bob", "n", "sha256:cd", now, None, "bob")
    await store.delete_user("bob")
    assert await store.cli_secrets("bob") == []


async def test_a_login_state_is_taken_once_and_not_after_expiry(metadata):
    store = metadata
    live = LoginStateRecord("h1", "corp", "n", "v", "b", "/apps/", time.time() + 60)
    await store.add_login_state(*dataclasses.astuple(live))
    await store.add_login_state("h2", "corp", "n", "v", "b", "/apps/", time.time() - 1)
    assert await store.take_login_state("h1") == live
    assert await store.take_login_state("h1") is None
    assert await store.take_login_state("h2") is None
    assert await store.take_login_state("nope") is None


async def test_stored_identity_providers_bump_the_version_and_audit(metadata):
    store = metadata
    assert await store.identity_providers_version() == 0
    assert await store.create_identity_provider("sso", "oidc", {"oidc": {"issuer": "https://x"}}, "s3cret", "root",
                                                {"type": "oidc"})
    assert not await store.create_identity_provider("sso", "oidc", {}, "", "root", {})
    assert await store.identity_providers_version() == 1
    (rec,) = await store.stored_identity_providers()
    assert (rec.name, rec.type, rec.settings, rec.secret) == ("sso", "oidc", {"oidc": {"issuer": "https://x"}},
                                                              "s3cret")
    assert "s3cret" not in repr(rec)
    assert await store.update_identity_provider("sso", {"a": 1}, "", "root", {"changed": ["a"]})
    assert not await store.update_identity_provider("nope", {}, "", "root", {})
    assert (await store.stored_identity_providers())[0].settings == {"a": 1}
    assert await store.delete_identity_provider("sso", "root")
    assert not await store.delete_identity_provider("sso", "root")
    assert await store.identity_providers_version() == 3
    assert await _actions(store) == [("root", "identity_provider.delete", "sso"),
                                     ("root", "identity_provider.update", "sso"),
                                     ("root", "identity_provider.create", "sso")]
