"""Signing in and out of the back office, CSRF, the language choice, and the layout every
screen shares: in Chromium."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.web.browser import Browser, assert_accessible, screenshot


def test_a_staff_member_signs_in_with_the_form_and_out_again(browser: Browser) -> None:
    page = browser.open(None, "/admin/account?from=bookmark")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    assert_accessible(page)
    screenshot(page, "sign-in")
    page.get_by_label("Email").fill("support@mercato.example")
    page.get_by_label("Password").fill(browser.world.credentials.staff_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/account\?from=bookmark$"))
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("support@mercato.example")
    cookie = next(c for c in page.context.cookies() if c["name"] == "mercato_staff")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login"))


def test_a_wrong_password_is_refused_and_says_so(browser: Browser) -> None:
    page = browser.open(None, "/admin/login")
    page.get_by_label("Email").fill("analyst@mercato.example")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong email or password.")
    expect(page.get_by_label("Email")).to_have_value("analyst@mercato.example")


def test_a_form_without_its_csrf_token_is_refused(browser: Browser) -> None:
    page = browser.open("owner", "/admin/account")
    answer = page.request.post("/admin/account/language", form={"language": "de"})
    assert answer.status == 403
    wrong = page.request.post(
        "/admin/account/language", form={"language": "de", "csrf_token": "0" * 64}
    )
    assert wrong.status == 403
    page.reload()
    expect(page.get_by_label("The back office speaks")).to_have_value("")


def test_each_user_picks_the_back_office_language(browser: Browser) -> None:
    page = browser.open("analyst", "/admin/account")
    assert_accessible(page)
    page.get_by_label("The back office speaks").select_option("de")
    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_role("heading", name="Ihr Konto")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "de")
    page.get_by_label("Die Verwaltung spricht").select_option("ja")
    page.get_by_role("button", name="Speichern").first.click()
    expect(page.get_by_role("heading", name="アカウント")).to_be_visible()
    page.get_by_label("管理画面の言語").select_option("")
    page.get_by_role("button", name="保存").first.click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()


def test_a_role_sees_only_the_screens_it_may_use(browser: Browser) -> None:
    page = browser.open("analyst", "/admin/account")
    nav = page.get_by_role("complementary", name="Screens")
    expect(nav.get_by_role("link", name="Orders")).to_be_visible()
    expect(nav.get_by_role("link", name="Settings")).to_have_count(0)
    expect(nav.get_by_role("link", name="Support")).to_have_count(0)
    answer = page.request.get("/admin/settings")
    assert answer.status in (403, 404)
