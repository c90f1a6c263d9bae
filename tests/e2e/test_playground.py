"""The playground and the docs pages in a real headless browser (Debian's chromium through
chromium-driver, driven by Selenium): text typed into the page, the rendered answer checked against
the SDK for every pipeline; the docs load their assets from the gateway itself. Skips, saying why,
where no browser is installed (``.ci/run`` installs one)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import jsonl

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NO_BROWSER = ("no headless browser here: the playground test needs Debian's chromium and chromium-driver "
              "(apt-get install chromium chromium-driver; .ci/run installs them)")

# a module-level skip: no server is started for nothing where there is no browser
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.skipif(not (CHROMIUM and DRIVER), reason=NO_BROWSER)]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, tiny_gateway):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{tiny_gateway.url}/playground")
    WebDriverWait(browser, 30).until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    return browser


def run(page, model: str, text: str, text2: str | None = None):
    """Pick ``model``, type the texts, press Run; the rendered result element."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    Select(page.find_element("id", "pipeline")).select_by_value(model)
    for field, value in (("text", text), ("text2", text2)):
        if value is not None:
            box = page.find_element("id", field)
            box.clear()
            box.send_keys(value)
    page.find_element("id", "run").click()
    WebDriverWait(page, 60).until(
        lambda d: d.find_element("id", "result").get_attribute("data-model") == model
        or not d.find_element("id", "error").get_attribute("hidden") is not None)
    error = page.find_element("id", "error")
    assert error.get_attribute("hidden") is not None, error.text
    return page.find_element("id", "result")


def bars(result) -> list[tuple[str, float]]:
    return [(b.get_attribute("data-label"), float(b.get_attribute("data-score")))
            for b in result.find_elements("css selector", ".bar")]


def ranked(result) -> list[tuple[int, float]]:
    return [(int(li.get_attribute("data-index")), float(li.get_attribute("data-score")))
            for li in result.find_elements("css selector", ".ranked li")]


def test_the_page_offers_every_served_pipeline(page):
    options = {o.get_attribute("value") for o in page.find_elements("css selector", "#pipeline option")}
    assert options == {"text_classification", "zero_shot_classification", "information_extraction",
                       "sentence_similarity", "reranking", "pair_classification", "text_embedding"}


def test_text_classification_as_bars(page, sdk):
    text = "这家酒店的服务很周到，早餐也很好吃"
    got = bars(run(page, "text_classification", text))
    want = sdk.text_classify(text)
    assert [label for label, _ in got] == sorted(want, key=lambda k: -want[k])
    assert dict(got) == pytest.approx(want, abs=1e-6)


def test_zero_shot_labels_as_bars_best_first(page, sdk):
    text = "这款手机拍照效果很好，电池也耐用"
    result = run(page, "zero_shot_classification", text, "手机\n水果，书籍")
    want = sdk.classify(text, ["手机", "水果", "书籍"], hypothesis_template="这篇文章的标题是{}")
    got = bars(result)
    assert [label for label, _ in got] == want["labels"]
    assert [s for _, s in got] == pytest.approx(want["scores"], abs=1e-6)
    widths = [b.get_attribute("style") for b in result.find_elements("css selector", ".fill")]
    assert all("width" in w for w in widths)


def test_uie_spans_highlighted_in_the_text(page, sdk):
    schema = {"人物": None, "地理位置": None, "组织机构": None}
    # the synthetic checkpoint's answers carry no meaning: take a news sentence where it finds spans
    texts = [t for t in jsonl("msra_ner.jsonl") if len(t) <= 80][:60]
    text, paths = next((t, p) for t, p in zip(texts, sdk.extract(texts, schema)) if len(p) >= 2)
    result = run(page, "information_extraction", text, json.dumps(schema, ensure_ascii=False))
    spans = {(s["type"], s["span"], s["offset"][0]) for path in paths for s in path}
    marks = result.find_elements("css selector", "mark")
    marked = {(m.get_attribute("data-type"), m.text, int(m.get_attribute("data-start"))) for m in marks}
    assert marked and marked <= spans
    assert result.find_element("css selector", ".highlighted").text.replace("\n", "") == text.replace("\n", "")
    assert len(result.find_elements("css selector", "table.paths tr")) == len(paths) + 1


def test_similarity_and_rerank_sorted_best_first(page, sdk):
    source, sentences = "今天天气很好", ["今天天气不错", "酒店服务很周到", "明天会下雨吗"]
    got = ranked(run(page, "sentence_similarity", source, "\n".join(sentences)))
    want = sdk.similarity([source] * 3, sentences)
    assert [i for i, _ in got] == sorted(range(3), key=lambda i: -want[i])
    assert [s for _, s in got] == pytest.approx(sorted(want, reverse=True), abs=1e-6)
    query, passages = "这家酒店的服务怎么样", ["服务很周到", "手机电池很耐用", "前台态度一般"]
    got = ranked(run(page, "reranking", query, "\n".join(passages)))
    want = {r["index"]: r["score"] for r in sdk.rerank(query, passages)}
    assert [i for i, _ in got] == sorted(want, key=lambda i: -want[i])
    assert dict(got) == pytest.approx(want, abs=1e-6)


def test_pair_classification_and_embedding(page, sdk):
    got = bars(run(page, "pair_classification", "今天天气很好", "今天天气不错"))
    assert dict(got) == pytest.approx(sdk.pair_classify("今天天气很好", "今天天气不错"), abs=1e-6)
    result = run(page, "text_embedding", "这家酒店的早餐很好吃")
    dims = result.find_element("css selector", ".dims")
    assert int(dims.get_attribute("data-dims")) == sdk.embed("这家酒店的早餐很好吃").shape[0]
    assert "norm 1.0000" in dims.text


def test_errors_are_shown_not_swallowed(page):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    Select(page.find_element("id", "pipeline")).select_by_value("information_extraction")
    box = page.find_element("id", "text2")
    box.clear()
    box.send_keys("{not json")
    page.find_element("id", "run").click()
    WebDriverWait(page, 30).until(lambda d: d.find_element("id", "error").get_attribute("hidden") is None)
    assert "not valid JSON" in page.find_element("id", "error").text


def test_docs_render_from_the_gateways_own_assets(browser, tiny_gateway):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{tiny_gateway.url}/docs")
    WebDriverWait(browser, 60).until(lambda d: d.find_elements("css selector", ".opblock-summary-path"))
    listed = {e.text.replace("\u200b", "") for e in browser.find_elements("css selector", ".opblock-summary-path")}
    assert {"/v2/embed", "/v2/rerank", "/models/text_classification", "/v1/models/{model}"} <= listed
    scripts = [s.get_attribute("src") for s in browser.find_elements("css selector", "script[src]")]
    assert scripts and all(src.startswith(tiny_gateway.url) for src in scripts), scripts
