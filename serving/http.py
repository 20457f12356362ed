"""HTTP API (FastAPI): ``GET /health``, ``GET /recommend/{user_id}``, ``POST /recommend/cold``,
``GET /similar/{item_id}``, ``GET /search?q=...&user_id=...``. The model comes in through a dependency, not a global: a
:class:`serving.live.LiveModel`, so a version published while the server runs (``kgrec train``,
``kgrec retrain``) is loaded in the background and served once loaded, without a restart."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Callable

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, model_validator

from encoders.base import EncoderError
from kgrec.config import ServingConfig

from .live import LiveModel
from .recommender import (AttributesUnavailableError, Recommendation, Recommender, UnknownAttributeError,
                          UnknownItemError, UnknownUserError)
from .search import SearchUnavailableError


class Item(BaseModel):
    item_id: str
    score: float
    title: str


class Recommendations(BaseModel):
    model_version: str
    items: list[Item]


class ColdStartRecommendations(Recommendations):
    """A new user's list, and the given ids the model does not know (left out, not an error while
    one given item, friend or query remains)."""
    unknown_item_ids: list[str] = Field(default_factory=list)
    unknown_friend_ids: list[str] = Field(default_factory=list)


def _unicode(text: str) -> str:
    """JSON's ``\\ud800`` escape decodes to a lone surrogate, which no answer can echo back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate escape such as \\ud800)") from None
    return text


def _whole_number_as_id(value: object) -> object:
    """A JSON number that is a whole number is the id it spells (Last.fm's, MovieLens' ids are)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Text = Annotated[str, AfterValidator(_unicode)]
Id = Annotated[str, BeforeValidator(_whole_number_as_id), AfterValidator(_unicode)]


class ColdStartRequest(BaseModel):
    item_ids: list[Id] = Field(default_factory=list, max_length=10_000,
                               description="items the new user interacted with (strings; whole numbers are taken as ids)")
    friend_ids: list[Id] = Field(default_factory=list, max_length=10_000,
                                 description="known users the new user befriends")
    queries: list[Annotated[Text, Field(min_length=1, max_length=2000)]] = Field(
        default_factory=list, max_length=50, description="free-text queries the new user searched")
    k: int = Field(10, ge=1, le=1000, strict=True)  # not true, "5" or 5.0: ids refuse those too

    @model_validator(mode="after")
    def _some_input(self) -> "ColdStartRequest":
        if not self.item_ids and not self.friend_ids and not self.queries:
            raise ValueError("give item_ids, friend_ids, queries or several")
        return self


class _AsciiJSON(JSONResponse):
    """JSON that quoting any request input cannot fail: ASCII (a lone surrogate is escaped), and
    the non-finite numbers Python's parser takes (NaN, Infinity) written as strings."""

    def render(self, content: object) -> bytes:
        import json

        return json.dumps(_finite(content), ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# what each error means to a client, checked in order
# the first entry an error is an instance of gives its status: a subclass before its base
STATUS: dict[type[Exception], int] = {AttributesUnavailableError: 409, UnknownUserError: 404, UnknownItemError: 404,
                                      UnknownAttributeError: 404, SearchUnavailableError: 409,
                                      EncoderError: 503, ValueError: 422}  # 503: the query encoder cannot load here


def get_recommender(request: Request) -> Recommender:
    return request.app.state.model.get()


def create_app(model_dir: str | Path, reload_check_s: float = 1.0, cfg: ServingConfig | None = None,
               warm_search: bool = False) -> FastAPI:
    """Build the app around the model artifact at ``model_dir``, or the link to one (``current``),
    looking for a newly published version at most every ``reload_check_s`` seconds; ``cfg``'s
    ``ann_*`` settings decide the recall of very large catalogues; ``warm_search`` loads the query
    encoder in the background at start (``kgrec serve`` does)."""
    app = FastAPI(title="kgrec", version="0.1.0")
    app.state.model = LiveModel(model_dir, reload_check_s, cfg=cfg, warm_search=warm_search)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, written as ASCII JSON: the error quotes the input, which may hold a lone
        surrogate that UTF-8 cannot write (the answer would have been a 500)."""
        return _AsciiJSON(status_code=422, content=jsonable_encoder({"detail": exc.errors()}))

    def _answer(rec: Recommender, produce: Callable[[], list[Recommendation]]) -> Recommendations:
        """The recommendations ``produce`` returns, or the HTTP error its exception stands for."""
        try:
            items = produce()
        except tuple(STATUS) as e:
            status = next(code for kind, code in STATUS.items() if isinstance(e, kind))
            raise HTTPException(status, str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)) from e
        return Recommendations(model_version=rec.version,
                               items=[Item(item_id=r.item_id, score=r.score, title=r.title) for r in items])

    @app.get("/health")
    def health(rec: Recommender = Depends(get_recommender)) -> dict:
        return {"status": "ok", "model_version": rec.version, "users": len(rec.user_ids), "items": len(rec.item_ids),
                "scorer": "graph filter" if rec.scorer is not None else "embeddings",
                "search": rec.text_search is not None,
                "search_encoder": rec.text_search.encoder_state if rec.text_search is not None else None,
                "reload_error": app.state.model.reload_error}  # a newer version that did not load

    @app.get("/recommend/{user_id:path}", response_model=Recommendations)  # ids may hold "/"
    def recommend(user_id: str, k: int = Query(10, ge=1, le=1000),
                  within: list[str] = Query([], max_length=100, description="attribute ids (genre:Comedy): "
                                            "rank only the items linked to every one"),
                  exclude: list[str] = Query([], max_length=10_000,
                                             description="item ids to leave out besides the user's own "
                                                         "(taken up since the model's snapshot, say)"),
                  rec: Recommender = Depends(get_recommender)) -> Recommendations:
        return _answer(rec, lambda: rec.recommend(user_id, k, within=within, exclude=exclude))

    @app.post("/recommend/cold", response_model=ColdStartRecommendations)
    def cold(body: ColdStartRequest, rec: Recommender = Depends(get_recommender)) -> ColdStartRecommendations:
        answer = _answer(rec, lambda: rec.recommend_from_items(body.item_ids, body.k, body.friend_ids, body.queries))
        return ColdStartRecommendations(
            **answer.model_dump(),
            unknown_item_ids=list(dict.fromkeys(i for i in body.item_ids if i not in rec.item_index)),
            unknown_friend_ids=list(dict.fromkeys(u for u in body.friend_ids if u not in rec.user_index)))

    @app.get("/similar/{item_id:path}", response_model=Recommendations)
    def similar(item_id: str, k: int = Query(10, ge=1, le=1000),
                rec: Recommender = Depends(get_recommender)) -> Recommendations:
        return _answer(rec, lambda: rec.similar_items(item_id, k))

    @app.get("/search", response_model=Recommendations)
    def search(q: str = Query(..., min_length=1, max_length=2000, description="free text"),
               k: int = Query(10, ge=1, le=1000),
               user_id: str | None = Query(None, description="rank the matches for this user (empty: no user)"),
               rec: Recommender = Depends(get_recommender)) -> Recommendations:
        return _answer(rec, lambda: rec.search(q, k, user_id or None))

    return app
